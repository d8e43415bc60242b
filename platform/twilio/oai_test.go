package twilio

// The OpenAPI shape check: every request the adapter sends during these
// tests (as twiliotest records it: method, path, query, headers, form) is
// validated against Twilio's own OpenAPI descriptions of API 2010-04-01
// and TaskRouter v1 (twilio/twilio-oai, kept outside the repository in
// shared/vendor/twilio-oai): the operation exists for the method and
// path; its path parameters match their patterns; every query parameter,
// Twilio header (If-Match…) and form field sent is documented for that
// operation, of its type, with a documented enum value where it has an
// enum; required ones are present; and the operation's Basic
// authentication is used. The JSON is read with encoding/json: no
// dependency. newServer arranges the check at the end of every test;
// TestOpenAPICheck tests the checker itself.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/contactstop/contactstop/platform/twilio/twiliotest"
)

// oaiDir is where Twilio's OpenAPI descriptions are, from this package's
// directory (the steering repository's shared/vendor/twilio-oai).
var oaiDir = filepath.Join("..", "..", "..", "shared", "vendor", "twilio-oai")

// oaiFiles are the descriptions the adapter's operations are in.
var oaiFiles = []string{"twilio_api_v2010.json", "twilio_taskrouter_v1.json"}

// oaiSchema is the part of an OpenAPI schema the check reads.
type oaiSchema struct {
	Ref        string                `json:"$ref"`
	Type       string                `json:"type"`
	Format     string                `json:"format"`
	Enum       []any                 `json:"enum"`
	Pattern    string                `json:"pattern"`
	MinLength  *int                  `json:"minLength"`
	MaxLength  *int                  `json:"maxLength"`
	Minimum    *float64              `json:"minimum"`
	Maximum    *float64              `json:"maximum"`
	Items      *oaiSchema            `json:"items"`
	Properties map[string]*oaiSchema `json:"properties"`
	Required   []string              `json:"required"`
}

type oaiParam struct {
	Name     string     `json:"name"`
	In       string     `json:"in"`
	Required bool       `json:"required"`
	Schema   *oaiSchema `json:"schema"`
}

type oaiOperation struct {
	OperationID string     `json:"operationId"`
	Parameters  []oaiParam `json:"parameters"`
	RequestBody *struct {
		Required bool `json:"required"`
		Content  map[string]struct {
			Schema *oaiSchema `json:"schema"`
		} `json:"content"`
	} `json:"requestBody"`
	Security *[]map[string][]string `json:"security"`
}

type oaiDoc struct {
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas         map[string]*oaiSchema `json:"schemas"`
		SecuritySchemes map[string]struct {
			Type   string `json:"type"`
			Scheme string `json:"scheme"`
		} `json:"securitySchemes"`
	} `json:"components"`
	Security []map[string][]string `json:"security"`
}

// oaiOp is one operation, ready to match requests.
type oaiOp struct {
	id       string
	method   string
	template string
	path     *regexp.Regexp // over the escaped path; a group per parameter
	names    []string       // the groups' parameter names
	literal  int            // literal characters: the most specific template wins
	params   map[string]oaiParam
	form     *oaiSchema // the application/x-www-form-urlencoded body, if any
	formReq  bool
	basic    bool // HTTP Basic authentication
	doc      *oaiDoc
}

// oaiSpec is both descriptions.
type oaiSpec struct {
	ops []*oaiOp
	// headers are the header parameters of any operation: sending one is
	// checked against the operation's (If-Match on FetchCall is an error);
	// other headers (User-Agent, Content-Type…) are HTTP's own.
	headers map[string]bool
}

var (
	specOnce sync.Once
	spec     *oaiSpec
	specErr  error
)

// loadSpec reads the descriptions once.
func loadSpec(t testing.TB) *oaiSpec {
	t.Helper()
	specOnce.Do(func() { spec, specErr = readSpec(oaiDir) })
	require.NoError(t, specErr, "Twilio's OpenAPI descriptions (shared/vendor/twilio-oai)")
	return spec
}

var templateParam = regexp.MustCompile(`\{([^}/]+)\}`)

func readSpec(dir string) (*oaiSpec, error) {
	sp := &oaiSpec{headers: map[string]bool{}}
	for _, name := range oaiFiles {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		doc := &oaiDoc{}
		if err := json.Unmarshal(data, doc); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for template, item := range doc.Paths {
			var shared []oaiParam
			if raw, ok := item["parameters"]; ok {
				if err := json.Unmarshal(raw, &shared); err != nil {
					return nil, fmt.Errorf("%s %s parameters: %w", name, template, err)
				}
			}
			for method, raw := range item {
				m := strings.ToUpper(method)
				if !slices.Contains([]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}, m) {
					continue
				}
				var o oaiOperation
				if err := json.Unmarshal(raw, &o); err != nil {
					return nil, fmt.Errorf("%s %s %s: %w", name, m, template, err)
				}
				op, err := newOp(doc, m, template, o, shared)
				if err != nil {
					return nil, fmt.Errorf("%s %s %s: %w", name, m, template, err)
				}
				for _, p := range op.params {
					if p.In == "header" {
						sp.headers[http.CanonicalHeaderKey(p.Name)] = true
					}
				}
				sp.ops = append(sp.ops, op)
			}
		}
	}
	return sp, nil
}

func newOp(doc *oaiDoc, method, template string, o oaiOperation, shared []oaiParam) (*oaiOp, error) {
	op := &oaiOp{id: o.OperationID, method: method, template: template, params: map[string]oaiParam{}, doc: doc}
	for _, p := range append(slices.Clone(shared), o.Parameters...) {
		op.params[p.In+":"+p.Name] = p
	}
	var re strings.Builder
	re.WriteString("^")
	last := 0
	for _, m := range templateParam.FindAllStringSubmatchIndex(template, -1) {
		lit := template[last:m[0]]
		re.WriteString(regexp.QuoteMeta(lit))
		op.literal += len(lit)
		re.WriteString("([^/]+)")
		op.names = append(op.names, template[m[2]:m[3]])
		last = m[1]
	}
	re.WriteString(regexp.QuoteMeta(template[last:]))
	op.literal += len(template) - last
	re.WriteString("$")
	var err error
	if op.path, err = regexp.Compile(re.String()); err != nil {
		return nil, err
	}
	if o.RequestBody != nil {
		for ct, c := range o.RequestBody.Content {
			if ct == "application/x-www-form-urlencoded" {
				op.form = doc.resolve(c.Schema)
				op.formReq = o.RequestBody.Required
			}
		}
	}
	security := doc.Security
	if o.Security != nil {
		security = *o.Security
	}
	for _, req := range security {
		for name := range req {
			if s := doc.Components.SecuritySchemes[name]; s.Type == "http" && strings.EqualFold(s.Scheme, "basic") {
				op.basic = true
			}
		}
	}
	return op, nil
}

// resolve follows a schema's $ref within its description.
func (d *oaiDoc) resolve(s *oaiSchema) *oaiSchema {
	for i := 0; s != nil && s.Ref != "" && i < 8; i++ {
		s = d.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")]
	}
	return s
}

// find is the operation a request addresses.
func (sp *oaiSpec) find(method, escapedPath string) (*oaiOp, map[string]string, error) {
	var best *oaiOp
	var args []string
	pathKnown := false
	for _, op := range sp.ops {
		m := op.path.FindStringSubmatch(escapedPath)
		if m == nil {
			continue
		}
		pathKnown = true
		if op.method != method || (best != nil && best.literal >= op.literal) {
			continue
		}
		best, args = op, m[1:]
	}
	switch {
	case best == nil && pathKnown:
		return nil, nil, fmt.Errorf("%s %s: the path is documented, not for %s", method, escapedPath, method)
	case best == nil:
		return nil, nil, fmt.Errorf("%s %s: no documented operation has this path", method, escapedPath)
	}
	values := map[string]string{}
	for i, name := range best.names {
		v, err := url.PathUnescape(args[i])
		if err != nil {
			return nil, nil, fmt.Errorf("%s %s: path parameter %s: %w", method, escapedPath, name, err)
		}
		values[name] = v
	}
	return best, values, nil
}

// check validates one recorded request; it returns every problem found.
func (sp *oaiSpec) check(r twiliotest.Request) []error {
	op, pathArgs, err := sp.find(r.Method, r.Path)
	if err != nil {
		return []error{err}
	}
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s (%s %s): %s", op.id, r.Method, r.Path, fmt.Sprintf(format, args...)))
	}
	for name, v := range pathArgs {
		p, ok := op.params["path:"+name]
		if !ok {
			fail("path parameter %s is not described", name)
			continue
		}
		if err := op.value(p.Schema, v); err != nil {
			fail("path parameter %s=%q: %v", name, v, err)
		}
	}
	for name, vs := range r.Query {
		p, ok := op.params["query:"+name]
		if !ok {
			fail("query parameter %s is not documented", name)
			continue
		}
		if err := op.values(p.Schema, vs); err != nil {
			fail("query parameter %s=%q: %v", name, vs, err)
		}
	}
	for name, vs := range r.Header {
		name = http.CanonicalHeaderKey(name)
		if !sp.headers[name] {
			continue // HTTP's own header
		}
		p, ok := op.paramCI("header", name)
		if !ok {
			fail("header %s is not documented for this operation", name)
			continue
		}
		if err := op.values(p.Schema, vs); err != nil {
			fail("header %s=%q: %v", name, vs, err)
		}
	}
	for _, p := range op.params {
		if !p.Required {
			continue
		}
		switch p.In {
		case "query":
			if !r.Query.Has(p.Name) {
				fail("required query parameter %s is missing", p.Name)
			}
		case "header":
			if r.Header.Get(p.Name) == "" {
				fail("required header %s is missing", p.Name)
			}
		}
	}
	switch {
	case len(r.Form) > 0 && op.form == nil:
		fail("a form body %v is sent; the operation documents none", r.Form)
	case op.form != nil && (len(r.Form) > 0 || op.formReq):
		if r.ContentType != "application/x-www-form-urlencoded" {
			fail("the body's content type is %q, not application/x-www-form-urlencoded", r.ContentType)
		}
		for name, vs := range r.Form {
			s, ok := op.form.Properties[name]
			if !ok {
				fail("form parameter %s is not documented", name)
				continue
			}
			if err := op.values(s, vs); err != nil {
				fail("form parameter %s=%q: %v", name, vs, err)
			}
		}
		for _, name := range op.form.Required {
			if !r.Form.Has(name) {
				fail("required form parameter %s is missing", name)
			}
		}
	}
	if op.basic && r.AuthUser == "" {
		fail("no HTTP Basic credentials")
	}
	return errs
}

func (op *oaiOp) paramCI(in, name string) (oaiParam, bool) {
	for _, p := range op.params {
		if p.In == in && strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return oaiParam{}, false
}

// values checks a parameter's values: several only for an array.
func (op *oaiOp) values(s *oaiSchema, vs []string) error {
	s = op.doc.resolve(s)
	if s == nil {
		return nil
	}
	if s.Type == "array" {
		for _, v := range vs {
			if err := op.value(s.Items, v); err != nil {
				return err
			}
		}
		return nil
	}
	if len(vs) != 1 {
		return fmt.Errorf("%d values for a %s parameter", len(vs), s.Type)
	}
	return op.value(s, vs[0])
}

// value checks one value against its schema.
func (op *oaiOp) value(s *oaiSchema, v string) error {
	s = op.doc.resolve(s)
	if s == nil {
		return nil
	}
	switch s.Type {
	case "integer":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return errors.New("not an integer")
		}
		if (s.Minimum != nil && float64(n) < *s.Minimum) || (s.Maximum != nil && float64(n) > *s.Maximum) {
			return errors.New("out of range")
		}
	case "number":
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return errors.New("not a number")
		}
	case "boolean":
		if v != "true" && v != "false" {
			return errors.New("not true or false")
		}
	case "array":
		return op.value(s.Items, v)
	case "string", "":
		if s.MinLength != nil && len(v) < *s.MinLength || s.MaxLength != nil && len(v) > *s.MaxLength {
			return errors.New("length out of range")
		}
		if s.Pattern != "" {
			re, err := regexp.Compile(s.Pattern)
			if err == nil && !re.MatchString(v) {
				return fmt.Errorf("does not match %s", s.Pattern)
			}
		}
		if s.Format == "date-time" {
			if _, err := time.Parse(time.RFC3339, v); err != nil {
				return errors.New("not an RFC 3339 date-time")
			}
		}
	}
	if len(s.Enum) > 0 && !slices.ContainsFunc(s.Enum, func(e any) bool { return fmt.Sprint(e) == v }) {
		return fmt.Errorf("not one of %v", s.Enum)
	}
	return nil
}

// checkShapes validates every request srv received.
func checkShapes(t testing.TB, srv *twiliotest.Server) (checked int, ops map[string]int) {
	t.Helper()
	sp := loadSpec(t)
	ops = map[string]int{}
	for _, r := range srv.Calls() {
		for _, err := range sp.check(r) {
			t.Errorf("OpenAPI shape: %v", err)
		}
		checked++
		ops[string(r.Op)]++
	}
	return checked, ops
}

// TestOpenAPICheck tests the checker: valid requests pass, and every kind
// of departure from Twilio's descriptions is caught.
func TestOpenAPICheck(t *testing.T) {
	sp := loadSpec(t)
	ws, task, acct, call := twiliotest.NewSID("WS"), twiliotest.NewSID("WT"), twiliotest.NewSID("AC"), twiliotest.NewSID("CA")
	taskPath := "/v1/Workspaces/" + ws + "/Tasks/" + task
	callPath := "/2010-04-01/Accounts/" + acct + "/Calls/" + call + ".json"
	form := "application/x-www-form-urlencoded"
	base := func(method, path string) twiliotest.Request {
		return twiliotest.Request{Method: method, Path: path, Query: url.Values{}, Header: http.Header{
			"User-Agent": {"twilio-go/1.31.0"}, "Content-Type": {form}}, AuthUser: acct}
	}
	with := func(r twiliotest.Request, edit func(*twiliotest.Request)) twiliotest.Request { edit(&r); return r }
	post := func(path string, f url.Values) twiliotest.Request {
		return with(base(http.MethodPost, path), func(r *twiliotest.Request) { r.Form, r.ContentType = f, form })
	}
	valid := []twiliotest.Request{
		base(http.MethodGet, taskPath),
		with(post(taskPath, url.Values{"AssignmentStatus": {"canceled"}, "Reason": {"r"}}), func(r *twiliotest.Request) { r.Header.Set("If-Match", `"3"`) }),
		post(taskPath, url.Values{"AssignmentStatus": {"completed"}, "Reason": {"done"}}),
		with(base(http.MethodGet, "/v1/Workspaces/"+ws+"/Tasks"), func(r *twiliotest.Request) {
			r.Query = url.Values{"AssignmentStatus": {"pending", "reserved", "assigned"}, "PageSize": {"200"}, "Page": {"1"}, "PageToken": {"PAabc"}}
		}),
		base(http.MethodGet, "/v1/Workspaces/"+ws),
		base(http.MethodGet, callPath),
		post(callPath, url.Values{"Status": {"completed"}}),
		post(callPath, url.Values{"Status": {"canceled"}}),
	}
	for _, r := range valid {
		assert.Empty(t, sp.check(r), "%s %s %v", r.Method, r.Path, r.Form)
	}

	invalid := map[string]twiliotest.Request{
		"Status=hangup":             post(callPath, url.Values{"Status": {"hangup"}}),
		"undocumented form param":   post(callPath, url.Values{"Status": {"completed"}, "HangupReason": {"x"}}),
		"AssignmentStatus=stopped":  post(taskPath, url.Values{"AssignmentStatus": {"stopped"}, "Reason": {"r"}}),
		"Priority not an integer":   post(taskPath, url.Values{"Priority": {"high"}}),
		"repeated scalar":           post(taskPath, url.Values{"Reason": {"a", "b"}}),
		"form on a GET":             with(base(http.MethodGet, callPath), func(r *twiliotest.Request) { r.Form = url.Values{"Status": {"completed"}} }),
		"JSON body":                 with(post(callPath, url.Values{"Status": {"completed"}}), func(r *twiliotest.Request) { r.ContentType = "application/json" }),
		"If-Match on a call":        with(post(callPath, url.Values{"Status": {"completed"}}), func(r *twiliotest.Request) { r.Header.Set("If-Match", `"1"`) }),
		"undocumented query param":  with(base(http.MethodGet, taskPath), func(r *twiliotest.Request) { r.Query.Set("Fields", "all") }),
		"PageSize above 1000":       with(base(http.MethodGet, "/v1/Workspaces/"+ws+"/Tasks"), func(r *twiliotest.Request) { r.Query.Set("PageSize", "5000") }),
		"task sid pattern":          base(http.MethodGet, "/v1/Workspaces/"+ws+"/Tasks/CA"+task[2:]),
		"workspace sid pattern":     base(http.MethodGet, "/v1/Workspaces/c-1/Tasks/"+task),
		"call sid not a call":       base(http.MethodGet, "/2010-04-01/Accounts/"+acct+"/Calls/"+task+".json"),
		"undocumented path":         base(http.MethodGet, "/v1/Workspaces/"+ws+"/Tasks/"+task+"/Hangup"),
		"undocumented method":       base(http.MethodPut, taskPath),
		"calls path without .json":  base(http.MethodGet, "/2010-04-01/Accounts/"+acct+"/Calls/"+call),
		"no Basic credentials":      with(base(http.MethodGet, taskPath), func(r *twiliotest.Request) { r.AuthUser = "" }),
		"VirtualStartTime not time": post(taskPath, url.Values{"VirtualStartTime": {"yesterday"}}),
	}
	for name, r := range invalid {
		assert.NotEmpty(t, sp.check(r), name)
	}

	// Through twilio-go and the fake, as a broken adapter would send it.
	srv := twiliotest.New(t)
	call2 := srv.AddCall(twiliotest.VoiceCall{})
	c := newClient(t, srv)
	s, pe := c.session(t.Context(), OpStopContact)
	require.Nil(t, pe)
	defer s.close()
	_, err := s.updateCall(call2.SID, "hangup")
	require.Error(t, err)
	reqs := srv.Calls()
	require.Len(t, reqs, 1)
	errs := sp.check(reqs[0])
	require.NotEmpty(t, errs)
	assert.ErrorContains(t, errors.Join(errs...), "Status")
}
