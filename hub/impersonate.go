package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// This file is `kubectl --as` through the hub. A client's Impersonate-*
// headers are honoured only after the cluster itself has said, for each
// requested user, group, UID and extra, that the hub user may impersonate
// it: a SelfSubjectAccessReview sent through the tunnel as the hub user
// (with the group of its role in that cluster), the very check
// kube-apiserver's impersonation filter makes for a user who talks to it
// directly. Nothing is cached: each request asks again, so a RoleBinding
// removed in the cluster takes effect at once.

// impersonation is what a client asked to act as.
type impersonation struct {
	user   string
	groups []string
	uid    string
	extra  map[string][]string
}

// errBadImpersonation is a malformed set of impersonation headers.
type errBadImpersonation string

func (e errBadImpersonation) Error() string { return string(e) }

// isImpersonateHeader reports whether header key names impersonation,
// ignoring case and taking '_' for '-' (a proxy in front of an API server
// may do so).
func isImpersonateHeader(key string) bool {
	return len(key) >= len(impersonatePrefix) &&
		strings.EqualFold(strings.ReplaceAll(key[:len(impersonatePrefix)], "_", "-"), impersonatePrefix)
}

// requestedImpersonation reads the impersonation a client asks for in h,
// the request's headers (never its trailers), with kube-apiserver's rules:
// header names in any case; an empty Impersonate-User is none; groups,
// UID or extras without a user are an error. It also refuses what the API
// server would take only the first of (two users or UIDs), and header
// names that only look like impersonation. It returns nil if the client
// asks for none.
func requestedImpersonation(h http.Header) (*impersonation, error) {
	var (
		imp       impersonation
		users     []string
		uids      []string
		asked     []string
		anyHeader bool
	)
	for key, values := range h {
		// Impersonate_User and the like are not impersonation to the API
		// server; rewrite drops them all the same.
		if len(key) < len(impersonatePrefix) || !strings.EqualFold(key[:len(impersonatePrefix)], impersonatePrefix) {
			continue
		}
		anyHeader = true
		lower := strings.ToLower(key)
		switch {
		case lower == "impersonate-user":
			users = append(users, values...)
		case lower == "impersonate-group":
			imp.groups = append(imp.groups, values...)
			asked = append(asked, "groups")
		case lower == "impersonate-uid":
			uids = append(uids, values...)
			asked = append(asked, "uid")
		case strings.HasPrefix(lower, "impersonate-extra-"):
			k, err := url.PathUnescape(lower[len("impersonate-extra-"):])
			if err != nil || k == "" {
				return nil, errBadImpersonation(fmt.Sprintf("header %s: malformed extra key", key))
			}
			if imp.extra == nil {
				imp.extra = map[string][]string{}
			}
			imp.extra[k] = append(imp.extra[k], values...)
			asked = append(asked, "extra "+k)
		default:
			return nil, errBadImpersonation(fmt.Sprintf("header %s is not an impersonation header the hub knows", key))
		}
	}
	if !anyHeader {
		return nil, nil
	}
	if len(users) > 1 || len(uids) > 1 {
		return nil, errBadImpersonation("only one Impersonate-User and one Impersonate-Uid may be sent")
	}
	if len(users) == 1 {
		imp.user = users[0]
	}
	if len(uids) == 1 {
		imp.uid = uids[0]
	}
	if imp.user == "" {
		if len(asked) == 0 {
			return nil, nil // an empty Impersonate-User: none, as for the API server
		}
		return nil, errBadImpersonation(fmt.Sprintf("requested %v without impersonating a user", asked))
	}
	return &imp, nil
}

// reviews returns the access checks imp needs, in kube-apiserver's order:
// the user (a ServiceAccount for system:serviceaccount:NS:NAME), each group,
// each extra value, the UID.
func (imp *impersonation) reviews() []authorizationv1.ResourceAttributes {
	var out []authorizationv1.ResourceAttributes
	user := authorizationv1.ResourceAttributes{Verb: "impersonate", Group: corev1.GroupName, Resource: "users", Name: imp.user}
	if rest, ok := strings.CutPrefix(imp.user, "system:serviceaccount:"); ok {
		if ns, name, ok := strings.Cut(rest, ":"); ok {
			user = authorizationv1.ResourceAttributes{Verb: "impersonate", Group: corev1.GroupName, Resource: "serviceaccounts", Namespace: ns, Name: name}
		}
	}
	out = append(out, user)
	for _, g := range imp.groups {
		out = append(out, authorizationv1.ResourceAttributes{Verb: "impersonate", Group: corev1.GroupName, Resource: "groups", Name: g})
	}
	for k, vs := range imp.extra {
		for _, v := range vs {
			out = append(out, authorizationv1.ResourceAttributes{Verb: "impersonate", Group: authenticationv1.GroupName, Resource: "userextras", Subresource: k, Name: v})
		}
	}
	if imp.uid != "" {
		out = append(out, authorizationv1.ResourceAttributes{Verb: "impersonate", Group: authenticationv1.GroupName, Resource: "uids", Name: imp.uid})
	}
	return out
}

// setHeaders writes imp as the outgoing impersonation.
func (imp *impersonation) setHeaders(h http.Header) {
	h.Set("Impersonate-User", imp.user)
	for _, g := range imp.groups {
		h.Add("Impersonate-Group", g)
	}
	if imp.uid != "" {
		h.Set("Impersonate-Uid", imp.uid)
	}
	for k, vs := range imp.extra {
		if k == RequestIDExtra {
			continue // the hub's own
		}
		h[http.CanonicalHeaderKey("Impersonate-Extra-"+url.PathEscape(k))] = vs
	}
}

// errImpersonationDenied carries the Status the API server gives a direct
// user who may not impersonate.
type errImpersonationDenied struct{ status metav1.Status }

func (e *errImpersonationDenied) Error() string { return e.status.Message }

// checkImpersonation asks cluster t.cluster whether the hub user may
// impersonate what imp names: one SelfSubjectAccessReview per item, as the
// hub user. It returns nil if every one is allowed, an
// *errImpersonationDenied for the first one refused, or another error if
// the cluster could not be asked.
func (p *kubeProxy) checkImpersonation(ctx context.Context, t proxyTarget, imp *impersonation) error {
	for _, ra := range imp.reviews() {
		allowed, reason, err := p.selfReview(ctx, t, ra)
		if err != nil {
			return err
		}
		if !allowed {
			return &errImpersonationDenied{status: forbiddenStatus(t.user, ra, reason)}
		}
	}
	return nil
}

// selfReview sends one SelfSubjectAccessReview to the cluster as the hub
// user.
func (p *kubeProxy) selfReview(ctx context.Context, t proxyTarget, ra authorizationv1.ResourceAttributes) (bool, string, error) {
	body, err := json.Marshal(authorizationv1.SelfSubjectAccessReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authorization.k8s.io/v1", Kind: "SelfSubjectAccessReview"},
		Spec:     authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra},
	})
	if err != nil {
		return false, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+t.cluster+"/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", bytes.NewReader(body))
	if err != nil {
		return false, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "eco-hub/"+p.h.cfg.Version)
	req.Header.Set("Impersonate-User", t.user)
	for _, g := range t.groups {
		req.Header.Add("Impersonate-Group", g)
	}
	req.Header[p.requestIDHeader] = []string{t.requestID}
	resp, err := p.reviewTransport.RoundTrip(req)
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return false, "", fmt.Errorf("reading the access review: %w", err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return false, "", fmt.Errorf("the cluster answered the access review with %s: %.200s", resp.Status, data)
	}
	var review authorizationv1.SelfSubjectAccessReview
	if err := json.Unmarshal(data, &review); err != nil {
		return false, "", fmt.Errorf("decoding the access review: %w", err)
	}
	return review.Status.Allowed && !review.Status.Denied, review.Status.Reason, nil
}

// forbiddenStatus is the Status kube-apiserver's impersonation filter
// answers when user may not impersonate ra (responsewriters.Forbidden).
func forbiddenStatus(user string, ra authorizationv1.ResourceAttributes, reason string) metav1.Status {
	resource := ra.Resource
	if ra.Subresource != "" {
		resource += "/" + ra.Subresource
	}
	scope := "at the cluster scope"
	if ra.Namespace != "" {
		scope = fmt.Sprintf("in the namespace %q", ra.Namespace)
	}
	msg := fmt.Sprintf("User %q cannot %s resource %q in API group %q %s", user, ra.Verb, resource, ra.Group, scope)
	if reason != "" {
		msg += ": " + reason
	}
	st := apierrors.NewForbidden(schema.GroupResource{Group: ra.Group, Resource: ra.Resource}, ra.Name, errors.New(msg)).ErrStatus
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	return st
}
