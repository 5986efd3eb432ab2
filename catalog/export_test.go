package catalog

// SetCatalogPageSize sets the n of c's registry catalog requests, so that
// a test's few repositories take several pages.
func SetCatalogPageSize(c *Catalog, n int) { c.catalogPageSize = n }
