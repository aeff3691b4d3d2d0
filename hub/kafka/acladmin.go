package kafka

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/internal/auth"
)

// The ACL admin APIs: DescribeAcls, CreateAcls and DeleteAcls over
// Security.ACLs. Without an ACL store they answer SECURITY_DISABLED, as a
// Kafka broker without an authorizer does.

func securityDisabled() (int16, *string) {
	return kerr.SecurityDisabled.Code, kmsg.StringPtr("no authorizer: start weir serve with ACLs enabled (acls.enabled: true)")
}

func handleDescribeACLs(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.DescribeACLsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	store := c.s.opts.Security.ACLs
	if store == nil {
		resp.ErrorCode, resp.ErrorMessage = securityDisabled()
		return ready(resp)
	}
	f := auth.Filter{ResourceType: req.ResourceType, ResourceName: req.ResourceName, PatternType: req.ResourcePatternType,
		Principal: req.Principal, Host: req.Host, Operation: req.Operation, Permission: req.PermissionType}
	type key struct {
		rt   kmsg.ACLResourceType
		name string
		pt   kmsg.ACLResourcePatternType
	}
	at := map[key]int{}
	for _, a := range store.Describe(f) {
		k := key{a.ResourceType, a.ResourceName, a.PatternType}
		i, ok := at[k]
		if !ok {
			r := kmsg.NewDescribeACLsResponseResource()
			r.ResourceType, r.ResourceName, r.ResourcePatternType = k.rt, k.name, k.pt
			resp.Resources = append(resp.Resources, r)
			i = len(resp.Resources) - 1
			at[k] = i
		}
		e := kmsg.NewDescribeACLsResponseResourceACL()
		e.Principal, e.Host, e.Operation, e.PermissionType = a.Principal, a.Host, a.Operation, a.Permission
		resp.Resources[i].ACLs = append(resp.Resources[i].ACLs, e)
	}
	return ready(resp)
}

func handleCreateACLs(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.CreateACLsRequest)
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	store := c.s.opts.Security.ACLs
	for _, cr := range req.Creations {
		r := kmsg.NewCreateACLsResponseResult()
		if store == nil {
			r.ErrorCode, r.ErrorMessage = securityDisabled()
		} else {
			a := auth.ACL{Principal: cr.Principal, Host: cr.Host, ResourceType: cr.ResourceType, ResourceName: cr.ResourceName,
				PatternType: cr.ResourcePatternType, Operation: cr.Operation, Permission: cr.PermissionType}
			if err := a.Validate(); err != nil {
				r.ErrorCode, r.ErrorMessage = kerr.InvalidRequest.Code, errMessage(err)
			} else if err := store.Add(a); err != nil {
				r.ErrorCode, r.ErrorMessage = kerr.KafkaStorageError.Code, errMessage(err)
			} else {
				c.s.opts.Logger.Info("kafka: ACL created", "acl", a.String(), "by", c.principal())
			}
		}
		resp.Results = append(resp.Results, r)
	}
	return ready(resp)
}

func handleDeleteACLs(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.DeleteACLsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	store := c.s.opts.Security.ACLs
	for _, f := range req.Filters {
		r := kmsg.NewDeleteACLsResponseResult()
		if store == nil {
			r.ErrorCode, r.ErrorMessage = securityDisabled()
			resp.Results = append(resp.Results, r)
			continue
		}
		gone, err := store.Delete(auth.Filter{ResourceType: f.ResourceType, ResourceName: f.ResourceName, PatternType: f.ResourcePatternType,
			Principal: f.Principal, Host: f.Host, Operation: f.Operation, Permission: f.PermissionType})
		if err != nil {
			r.ErrorCode, r.ErrorMessage = kerr.KafkaStorageError.Code, errMessage(err)
		}
		for _, a := range gone {
			m := kmsg.NewDeleteACLsResponseResultMatchingACL()
			m.ResourceType, m.ResourceName, m.ResourcePatternType = a.ResourceType, a.ResourceName, a.PatternType
			m.Principal, m.Host, m.Operation, m.PermissionType = a.Principal, a.Host, a.Operation, a.Permission
			r.MatchingACLs = append(r.MatchingACLs, m)
			c.s.opts.Logger.Info("kafka: ACL deleted", "acl", a.String(), "by", c.principal())
		}
		resp.Results = append(resp.Results, r)
	}
	return ready(resp)
}
