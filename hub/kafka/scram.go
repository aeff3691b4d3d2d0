package kafka

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/internal/auth"
)

// DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554):
// SCRAM users managed the way kafka-configs, kadm and rpk do it. The
// client salts the password; the broker stores only the keys derived from
// the salted password.

// scramMechanisms maps KIP-554's mechanism numbers to names.
var scramMechanisms = map[int8]string{1: auth.ScramSHA256, 2: auth.ScramSHA512}

func scramMechanismNumber(name string) int8 {
	for n, m := range scramMechanisms {
		if m == name {
			return n
		}
	}
	return 0
}

func handleDescribeUserSCRAMCredentials(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.DescribeUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeUserSCRAMCredentialsResponse)
	users := c.s.opts.Security.Users
	if users == nil {
		resp.ErrorCode, resp.ErrorMessage = kerr.UnsupportedSaslMechanism.Code, kmsg.StringPtr("no SASL users on this listener")
		return ready(resp)
	}
	all := users.Users()
	want := map[string]bool{}
	for _, u := range req.Users {
		want[u.Name] = true
	}
	for _, u := range all {
		if len(want) > 0 && !want[u.Name] {
			continue
		}
		delete(want, u.Name)
		r := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
		r.User = u.Name
		for _, m := range []string{auth.ScramSHA256, auth.ScramSHA512} {
			if it, ok := u.Mechanisms[m]; ok {
				ci := kmsg.NewDescribeUserSCRAMCredentialsResponseResultCredentialInfo()
				ci.Mechanism, ci.Iterations = scramMechanismNumber(m), int32(it)
				r.CredentialInfos = append(r.CredentialInfos, ci)
			}
		}
		resp.Results = append(resp.Results, r)
	}
	for _, u := range req.Users {
		if want[u.Name] {
			r := kmsg.NewDescribeUserSCRAMCredentialsResponseResult()
			r.User, r.ErrorCode = u.Name, kerr.ResourceNotFound.Code
			r.ErrorMessage = kmsg.StringPtr("attempt to describe a user credential that does not exist")
			resp.Results = append(resp.Results, r)
			delete(want, u.Name)
		}
	}
	return ready(resp)
}

func handleAlterUserSCRAMCredentials(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.AlterUserSCRAMCredentialsRequest)
	resp := req.ResponseKind().(*kmsg.AlterUserSCRAMCredentialsResponse)
	users := c.s.opts.Security.Users
	result := func(user string, err error) {
		r := kmsg.NewAlterUserSCRAMCredentialsResponseResult()
		r.User = user
		switch {
		case err == nil:
		case errors.Is(err, auth.ErrUnknownMechanism):
			r.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		case errors.Is(err, auth.ErrIterations), errors.Is(err, auth.ErrEmptyName), errors.Is(err, auth.ErrEmptyPassword):
			r.ErrorCode = kerr.UnacceptableCredential.Code
		case errors.Is(err, auth.ErrNoCredential):
			r.ErrorCode = kerr.ResourceNotFound.Code
		default:
			r.ErrorCode = kerr.KafkaStorageError.Code
		}
		r.ErrorMessage = errMessage(err)
		resp.Results = append(resp.Results, r)
	}
	if users == nil {
		for _, d := range req.Deletions {
			result(d.Name, errors.New("no SASL users on this listener"))
		}
		for _, u := range req.Upsertions {
			result(u.Name, errors.New("no SASL users on this listener"))
		}
		return ready(resp)
	}
	for _, d := range req.Deletions {
		mech, ok := scramMechanisms[d.Mechanism]
		if !ok {
			result(d.Name, fmt.Errorf("%w %d", auth.ErrUnknownMechanism, d.Mechanism))
			continue
		}
		err := users.Delete(d.Name, mech)
		if err == nil {
			c.s.opts.Logger.Info("kafka: SCRAM credential deleted", "user", d.Name, "mechanism", mech, "by", c.principal())
		}
		result(d.Name, err)
	}
	for _, u := range req.Upsertions {
		mech, ok := scramMechanisms[u.Mechanism]
		if !ok {
			result(u.Name, fmt.Errorf("%w %d", auth.ErrUnknownMechanism, u.Mechanism))
			continue
		}
		err := users.SetSalted(u.Name, mech, u.Salt, u.SaltedPassword, int(u.Iterations))
		if err == nil {
			c.s.opts.Logger.Info("kafka: SCRAM credential set", "user", u.Name, "mechanism", mech, "by", c.principal())
		}
		result(u.Name, err)
	}
	return ready(resp)
}
