package sqlite

// The fixed SQL of the store. Each is prepared once when the store opens,
// on the pool that runs it.
const (
	qClusterNameTaken = `SELECT 1 FROM clusters WHERE name = ?`
	qRenameCluster    = `UPDATE clusters SET name = ? WHERE id = ?`
	qSetClusterLabels = `UPDATE clusters SET labels = ? WHERE id = ?`
	qCredentialTaken  = `SELECT 1 FROM clusters WHERE credential_hash = ? AND id != ?`
	qClusterExists    = `SELECT 1 FROM clusters WHERE id = ?`
	qInsertCluster    = `INSERT INTO clusters (id, name, provider, region, cloud_ref, created_at,
		credential_hash, state, reason, state_since, oidc_issuer, require_approval)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qClusterByID   = `SELECT ` + clusterColumns + ` FROM clusters WHERE id = ?`
	qClusterByName = `SELECT ` + clusterColumns + ` FROM clusters WHERE name = ?`
	// qClusterByHash looks in both hash columns, each through its index.
	qClusterByHash = `SELECT ` + clusterColumns + ` FROM clusters WHERE credential_hash = ?
		UNION ALL SELECT ` + clusterColumns + ` FROM clusters WHERE previous_credential_hash = ? LIMIT 1`

	qDeleteHistory = `DELETE FROM status_transitions WHERE cluster_id = ?`
	qDeleteCluster = `DELETE FROM clusters WHERE id = ?`
	qPin           = `UPDATE clusters SET fingerprint = ?, fingerprint_pinned_at = ? WHERE id = ? AND fingerprint = ''`
	qFingerprint   = `SELECT fingerprint FROM clusters WHERE id = ?`
	qRotate        = `UPDATE clusters SET credential_hash = ? WHERE id = ?`
	// qNextGeneration is a compare-and-set on credential_generation.
	qNextGeneration = `UPDATE clusters SET previous_credential_hash = credential_hash, credential_hash = ?,
		credential_generation = credential_generation + 1, credential_rotated_at = ?, previous_credential_until = ?
		WHERE id = ? AND credential_generation = ?`
	qConfirmCredential = `UPDATE clusters SET credential_confirmed = ?
		WHERE id = ? AND credential_confirmed < ? AND credential_generation >= ?`
	qCloudHealth = `UPDATE clusters SET cloud_health = ? WHERE id = ?`

	qStatus = `SELECT state, reason, state_since, last_heartbeat, rtt_ns, agent_version, kubernetes_version
		FROM clusters WHERE id = ?`
	qUpdateStatus = `UPDATE clusters SET state = ?, reason = ?, state_since = ?,
		last_heartbeat = ?, rtt_ns = ?, agent_version = ?, kubernetes_version = ? WHERE id = ?`
	qInsertTransition = `INSERT INTO status_transitions (cluster_id, from_state, to_state, reason, at)
		VALUES (?, ?, ?, ?, ?)`
	// qPruneHistory keeps the newest N (third argument) transitions of a
	// cluster.
	qPruneHistory = `DELETE FROM status_transitions WHERE cluster_id = ? AND seq <= (
		SELECT seq FROM status_transitions WHERE cluster_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)`
	qHistory = `SELECT cluster_id, from_state, to_state, reason, at
		FROM status_transitions WHERE cluster_id = ? ORDER BY seq DESC LIMIT ?`

	qIdentity = `SELECT oidc_issuer, require_approval, identity_state, identity_issuer, identity_jwks,
		identity_pinned_at, identity_keys_at FROM clusters WHERE id = ?`
	qSetIdentityConfig = `UPDATE clusters SET oidc_issuer = ?, require_approval = ? WHERE id = ?`
	qPinIdentity       = `UPDATE clusters SET identity_state = ?, identity_issuer = ?, identity_jwks = ?,
		identity_pinned_at = ?, identity_keys_at = ? WHERE id = ? AND identity_state = ''`
	qApproveIdentity = `UPDATE clusters SET identity_state = 'Pinned' WHERE id = ? AND identity_state = 'AwaitingApproval'`
	qUpdateKeys      = `UPDATE clusters SET identity_jwks = ?, identity_keys_at = ?
		WHERE id = ? AND identity_state = 'Pinned' AND identity_issuer = ?`
	qResetIdentity = `UPDATE clusters SET identity_state = '', identity_issuer = '', identity_jwks = NULL,
		identity_pinned_at = NULL, identity_keys_at = NULL WHERE id = ?`
	qNoteTransition = `INSERT INTO status_transitions (cluster_id, from_state, to_state, reason, at)
		SELECT id, state, state, ?, ? FROM clusters WHERE id = ?`

	qInsertToken = `INSERT INTO api_tokens (id, name, role, hash, created_at, expires_at, clusters, read_only, groups)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qTokenTaken  = `SELECT 1 FROM api_tokens WHERE hash = ?`
	qTokenByHash = `SELECT ` + tokenColumns + ` FROM api_tokens WHERE hash = ? AND revoked_at IS NULL
		AND (expires_at IS NULL OR expires_at > ?)`
	qTokens              = `SELECT ` + tokenColumns + ` FROM api_tokens ORDER BY created_at, id`
	qRevokeToken         = `UPDATE api_tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?`
	qTouchToken          = `UPDATE api_tokens SET last_used_at = ? WHERE id = ?`
	qCountTokens         = `SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)`
	qDeleteExpiredTokens = `DELETE FROM api_tokens WHERE expires_at IS NOT NULL AND expires_at < ?`

	qInsertAudit = `INSERT INTO audit_events (at, user_name, token_id, source, verb, cluster_id, api_group,
		resource, subresource, namespace, name, path, code, request_id, client_request_id, remote_addr)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// qPruneAudit keeps the events above a seq (the newest AuditLimit).
	qPruneAudit = `DELETE FROM audit_events WHERE seq <= ?`

	qInsertGrant   = `INSERT INTO grants (id, subject_kind, subject, cluster_id, role, created_at) VALUES (?, ?, ?, ?, ?, ?)`
	qGrantTaken    = `SELECT 1 FROM grants WHERE subject_kind = ? AND subject = ? AND cluster_id = ?`
	qGrants        = `SELECT ` + grantColumns + ` FROM grants ORDER BY created_at, id`
	qClusterGrants = `SELECT ` + grantColumns + ` FROM grants WHERE cluster_id = ? ORDER BY created_at, id`
	qGrantsFor     = `SELECT ` + grantColumns + ` FROM grants
		WHERE (subject_kind = 'user' AND subject = ?)
		   OR (subject_kind = 'group' AND subject IN (SELECT value FROM json_each(?)))
		ORDER BY created_at, id`
	qDeleteGrant         = `DELETE FROM grants WHERE id = ?`
	qDeleteClusterGrants = `DELETE FROM grants WHERE cluster_id = ?`
)

func writeQueries() []string {
	return []string{
		qClusterNameTaken, qCredentialTaken, qInsertCluster, qDeleteHistory, qDeleteCluster,
		qPin, qFingerprint, qRotate, qNextGeneration, qConfirmCredential, qCloudHealth, qStatus, qUpdateStatus, qInsertTransition,
		qPruneHistory, qInsertToken, qTokenTaken, qRevokeToken, qTouchToken, qInsertAudit, qPruneAudit,
		qInsertGrant, qGrantTaken, qDeleteGrant, qDeleteClusterGrants, qDeleteExpiredTokens,
		qSetIdentityConfig, qPinIdentity, qApproveIdentity, qUpdateKeys, qResetIdentity, qNoteTransition,
	}
}

func readQueries() []string {
	return []string{
		qClusterByID, qClusterByName, qClusterByHash, qClusterExists, qHistory,
		qTokenByHash, qTokens, qCountTokens, qGrants, qClusterGrants, qGrantsFor, qIdentity,
	}
}
