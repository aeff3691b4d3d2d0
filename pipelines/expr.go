package pipelines

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
	"github.com/valyala/fastjson"

	"github.com/weirhub/weir/connectors"
)

// Expr is an expression over a message, compiled once
// (github.com/expr-lang/expr). A message's top-level JSON fields are its
// variables; _key, _value, _time, _dataset, _partition and _offset give
// the record's own, and _headers its headers as a map of strings
// (_headers["weir.file"]). Fields missing from a record are nil, and an
// ordering comparison (<, <=, >, >=) with nil is false: `status >= 400`
// is false for a record without status, not an error.
//
// Only expr's built-in functions (len, lower, upper, trim, split,
// contains, now, duration, ...) can be called: CompileExpr refuses a
// call of any other name, with its place in the source.
//
// Comparisons of a field with a constant, and and/or/not of those — most
// filters and routes — are evaluated straight on the parsed JSON without
// building Go values; anything else, and any case the fast path is unsure
// of, goes through expr's VM with only the fields the expression uses
// loaded. An Expr is not safe for concurrent use.
type Expr struct {
	src    string
	prog   *vm.Program
	vm     vm.VM
	fast   fastBool  // nil when the expression has no fast form
	value  fastValue // nil when the value has no fast form
	idents []string  // variables the expression reads
	env    map[string]any
}

// ExprError is an expression that does not compile, with the place in
// its source.
type ExprError struct {
	Src    string
	Offset int // 0-based, in characters of Src
	Msg    string
}

func (e *ExprError) Error() string { return fmt.Sprintf("expression %q: %s", e.Src, e.Msg) }

// CompileExpr compiles src. Its errors are *ExprError.
func CompileExpr(src string) (*Expr, error) {
	tree, err := parser.Parse(src)
	if err != nil {
		ee := &ExprError{Src: src, Msg: trimExprErr(err)}
		var fe *file.Error
		if errors.As(err, &fe) {
			ee.Offset, ee.Msg = fe.Column, fe.Message
		}
		return nil, ee
	}
	if err := checkCalls(src, tree.Node); err != nil {
		return nil, err
	}
	e := &Expr{src: src, env: map[string]any{}}
	seen := map[string]bool{}
	ast.Find(tree.Node, func(n ast.Node) bool {
		if id, ok := n.(*ast.IdentifierNode); ok && !seen[id.Value] {
			seen[id.Value] = true
			e.idents = append(e.idents, id.Value)
		}
		return false
	})
	prog, err := expr.Compile(src, expr.Env(map[string]any{}), expr.AllowUndefinedVariables(), expr.Patch(nilOrdering{}))
	if err != nil {
		ee := &ExprError{Src: src, Msg: trimExprErr(err)}
		var fe *file.Error
		if errors.As(err, &fe) {
			ee.Offset, ee.Msg = fe.Column, fe.Message
		}
		return nil, ee
	}
	e.prog = prog
	e.fast = compileFast(tree.Node)
	e.value = compileValue(tree.Node)
	return e, nil
}

// checkCalls refuses calls of names that are not functions: with
// undefined variables allowed, `lenght(msg)` would otherwise compile and
// fail every record at run time ("cannot call nil").
func checkCalls(src string, root ast.Node) error {
	var err error
	ast.Find(root, func(n ast.Node) bool {
		c, ok := n.(*ast.CallNode)
		if !ok || err != nil {
			return false
		}
		id, ok := c.Callee.(*ast.IdentifierNode)
		if !ok {
			return false
		}
		msg := fmt.Sprintf("unknown function %s", id.Value)
		if s := suggestFunction(id.Value); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
		} else {
			msg += " (expr's built-in functions: " + strings.Join(builtinNames(), ", ") + ")"
		}
		err = &ExprError{Src: src, Offset: id.Location().From, Msg: msg}
		return true
	})
	return err
}

// suggestFunction is the built-in function name meant by a misspelt one:
// the closest by edit distance, or one it starts with (lenght: len).
func suggestFunction(name string) string {
	if s := connectors.Suggest(name, slices.Values(builtinNames())); s != "" {
		return s
	}
	best := ""
	for _, f := range builtinNames() {
		if len(f) >= 3 && len(f) > len(best) && strings.HasPrefix(strings.ToLower(name), strings.ToLower(f)) {
			best = f
		}
	}
	return best
}

var builtinNames = sync.OnceValue(func() []string {
	var names []string
	for _, f := range builtin.Builtins {
		if !strings.HasPrefix(f.Name, "$") {
			names = append(names, f.Name)
		}
	}
	return names
})

// nilOrdering rewrites a < b (and <=, >, >=) into
// (a == nil or b == nil) ? false : a < b, so that a field a record lacks
// makes an ordering comparison false instead of an error.
type nilOrdering struct{}

func (nilOrdering) Visit(node *ast.Node) {
	b, ok := (*node).(*ast.BinaryNode)
	if !ok {
		return
	}
	switch b.Operator {
	case "<", "<=", ">", ">=":
	default:
		return
	}
	isNil := func(n ast.Node) ast.Node {
		return &ast.BinaryNode{Operator: "==", Left: n, Right: &ast.NilNode{}}
	}
	orig := &ast.BinaryNode{Operator: b.Operator, Left: b.Left, Right: b.Right}
	orig.SetLocation(b.Location())
	ast.Patch(node, &ast.ConditionalNode{
		Cond: &ast.BinaryNode{Operator: "or", Left: isNil(b.Left), Right: isNil(b.Right)},
		Exp1: &ast.BoolNode{Value: false},
		Exp2: orig,
	})
}

// Value evaluates the expression for m into a JSON value built in the
// message's arena: constants and arithmetic of a field with a constant
// straight from the parsed JSON, the rest through expr.
func (e *Expr) Value(m *connectors.Message) (*fastjson.Value, error) {
	a := m.Arena()
	if e.value != nil && a != nil {
		if v, ok := e.value(m, a); ok {
			return v, nil
		}
	}
	x, err := e.Eval(m)
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, fmt.Errorf("the record is not parsed")
	}
	return fromGo(a, x)
}

// fastValue computes a value directly; ok=false defers to expr.
type fastValue func(m *connectors.Message, a *fastjson.Arena) (*fastjson.Value, bool)

func compileValue(n ast.Node) fastValue {
	switch n := n.(type) {
	case *ast.StringNode:
		s := n.Value
		return func(_ *connectors.Message, a *fastjson.Arena) (*fastjson.Value, bool) { return a.NewString(s), true }
	case *ast.IntegerNode:
		v := n.Value
		return func(_ *connectors.Message, a *fastjson.Arena) (*fastjson.Value, bool) { return a.NewNumberInt(v), true }
	case *ast.FloatNode:
		v := n.Value
		return func(_ *connectors.Message, a *fastjson.Arena) (*fastjson.Value, bool) {
			return a.NewNumberFloat64(v), true
		}
	case *ast.BoolNode:
		v := n.Value
		return func(_ *connectors.Message, a *fastjson.Arena) (*fastjson.Value, bool) {
			if v {
				return a.NewTrue(), true
			}
			return a.NewFalse(), true
		}
	case *ast.BinaryNode:
		if b := compileFast(n); b != nil && isComparison(n.Operator) {
			return func(m *connectors.Message, a *fastjson.Arena) (*fastjson.Value, bool) {
				r, ok := b(m)
				if !ok {
					return nil, false
				}
				if r {
					return a.NewTrue(), true
				}
				return a.NewFalse(), true
			}
		}
		return compileArith(n)
	}
	return nil
}

func isComparison(op string) bool {
	switch op {
	case "==", "!=", "<", "<=", ">", ">=", "and", "&&", "or", "||", "in":
		return true
	}
	return false
}

// compileArith handles field OP constant (and constant OP field) for + -
// * /, with expr's number rules: int op int stays int except /, anything
// with a float is float.
func compileArith(n *ast.BinaryNode) fastValue {
	switch n.Operator {
	case "+", "-", "*", "/":
	default:
		return nil
	}
	lo, lok := fastOperand(n.Left)
	ro, rok := fastOperand(n.Right)
	if !lok || !rok || (lo.path == nil) == (ro.path == nil) {
		return nil
	}
	fieldLeft := lo.path != nil
	field, konst := lo, ro
	if !fieldLeft {
		field, konst = ro, lo
	}
	kf, isNum := konst.konst.(float64)
	if !isNum {
		return nil
	}
	_, kIsFloat := konstNode(n, fieldLeft).(*ast.FloatNode)
	op := n.Operator
	return func(m *connectors.Message, a *fastjson.Arena) (*fastjson.Value, bool) {
		v, ok := getPath(m, field.path)
		if !ok || v == nil || v.Type() != fastjson.TypeNumber {
			return nil, false
		}
		x := v.GetFloat64()
		// An integral number prints the same as an int or a float, so
		// the choice only matters for the result's fractional part.
		fieldIsInt := x == math.Trunc(x) && math.Abs(x) < 1<<53
		l, r := x, kf
		if !fieldLeft {
			l, r = kf, x
		}
		if fieldIsInt && !kIsFloat && op != "/" {
			li, ri := int(l), int(r)
			switch op {
			case "+":
				return a.NewNumberInt(li + ri), true
			case "-":
				return a.NewNumberInt(li - ri), true
			case "*":
				return a.NewNumberInt(li * ri), true
			}
		}
		switch op {
		case "+":
			return a.NewNumberFloat64(l + r), true
		case "-":
			return a.NewNumberFloat64(l - r), true
		case "*":
			return a.NewNumberFloat64(l * r), true
		case "/":
			if r == 0 {
				return nil, false
			}
			return a.NewNumberFloat64(l / r), true
		}
		return nil, false
	}
}

func konstNode(n *ast.BinaryNode, fieldLeft bool) ast.Node {
	if fieldLeft {
		return n.Right
	}
	return n.Left
}

func trimExprErr(err error) string {
	s := err.Error()
	if i := bytes.IndexByte([]byte(s), '\n'); i > 0 {
		return s[:i]
	}
	return s
}

// String is the source of the expression.
func (e *Expr) String() string { return e.src }

// Eval evaluates the expression for m.
func (e *Expr) Eval(m *connectors.Message) (any, error) {
	clear(e.env)
	for _, id := range e.idents {
		if v, ok := variable(m, id); ok {
			e.env[id] = v
		}
	}
	out, err := e.vm.Run(e.prog, e.env)
	if err != nil {
		return nil, fmt.Errorf("evaluating %q: %v", e.src, trimExprErr(err))
	}
	return out, nil
}

// Bool evaluates a condition: the result must be a boolean (nil counts as
// false).
func (e *Expr) Bool(m *connectors.Message) (bool, error) {
	if e.fast != nil {
		if b, ok := e.fast(m); ok {
			return b, nil
		}
	}
	v, err := e.Eval(m)
	if err != nil {
		return false, err
	}
	switch b := v.(type) {
	case bool:
		return b, nil
	case nil:
		return false, nil
	}
	return false, fmt.Errorf("condition %q is %T %v, not true or false", e.src, v, v)
}

// variable loads one variable for the VM.
func variable(m *connectors.Message, name string) (any, bool) {
	switch name {
	case "_key":
		if m.Key == nil {
			return nil, true
		}
		return string(m.Key), true
	case "_value":
		return string(m.Value), true
	case "_time":
		return m.Time, true
	case "_dataset":
		return m.Dataset, true
	case "_partition":
		return int(m.Partition), true
	case "_offset":
		return int(m.Offset), true
	case "_headers":
		// Built only for expressions that name _headers.
		hs := make(map[string]any, len(m.Headers))
		for _, h := range m.Headers {
			hs[string(h.Key)] = string(h.Value)
		}
		return hs, true
	}
	v := m.Get(name)
	if v == nil {
		return nil, false
	}
	return toGo(v), true
}

// toGo converts a JSON value to what expr works with.
func toGo(v *fastjson.Value) any {
	switch v.Type() {
	case fastjson.TypeString:
		return string(v.GetStringBytes())
	case fastjson.TypeNumber:
		raw := v.MarshalTo(nil)
		if !bytes.ContainsAny(raw, ".eE") {
			if n, err := strconv.Atoi(string(raw)); err == nil {
				return n
			}
		}
		return v.GetFloat64()
	case fastjson.TypeTrue:
		return true
	case fastjson.TypeFalse:
		return false
	case fastjson.TypeObject:
		out := map[string]any{}
		v.GetObject().Visit(func(k []byte, x *fastjson.Value) { out[string(k)] = toGo(x) })
		return out
	case fastjson.TypeArray:
		arr := v.GetArray()
		out := make([]any, len(arr))
		for i, x := range arr {
			out[i] = toGo(x)
		}
		return out
	}
	return nil
}

// fromGo builds a JSON value for a result of an expression.
func fromGo(a *fastjson.Arena, x any) (*fastjson.Value, error) {
	switch v := x.(type) {
	case nil:
		return a.NewNull(), nil
	case string:
		return a.NewString(v), nil
	case bool:
		if v {
			return a.NewTrue(), nil
		}
		return a.NewFalse(), nil
	case int:
		return a.NewNumberInt(v), nil
	case int64:
		return a.NewNumberString(strconv.FormatInt(v, 10)), nil
	case float64:
		return a.NewNumberFloat64(v), nil
	case time.Time:
		return a.NewString(v.UTC().Format(time.RFC3339Nano)), nil
	case time.Duration:
		return a.NewString(v.String()), nil
	case []any:
		arr := a.NewArray()
		for i, e := range v {
			ev, err := fromGo(a, e)
			if err != nil {
				return nil, err
			}
			arr.SetArrayItem(i, ev)
		}
		return arr, nil
	case map[string]any:
		obj := a.NewObject()
		for k, e := range v {
			ev, err := fromGo(a, e)
			if err != nil {
				return nil, err
			}
			obj.Set(k, ev)
		}
		return obj, nil
	}
	return nil, fmt.Errorf("a %T cannot be stored in a field", x)
}

// fastBool evaluates a condition directly on the parsed JSON; ok=false
// means "not sure": the caller evaluates it the general way.
type fastBool func(m *connectors.Message) (result, ok bool)

// fastValue fetches an operand: a field (by path) or a constant.
type operand struct {
	path  []string // field path; nil for a constant
	konst any      // string, float64, bool, or nil (with isNil)
	isNil bool
}

func compileFast(n ast.Node) fastBool {
	switch n := n.(type) {
	case *ast.BinaryNode:
		switch n.Operator {
		case "and", "&&":
			l, r := compileFast(n.Left), compileFast(n.Right)
			if l == nil || r == nil {
				return nil
			}
			return func(m *connectors.Message) (bool, bool) {
				a, ok := l(m)
				if !ok {
					return false, false
				}
				if !a {
					return false, true
				}
				return r(m)
			}
		case "or", "||":
			l, r := compileFast(n.Left), compileFast(n.Right)
			if l == nil || r == nil {
				return nil
			}
			return func(m *connectors.Message) (bool, bool) {
				a, ok := l(m)
				if !ok {
					return false, false
				}
				if a {
					return true, true
				}
				return r(m)
			}
		case "==", "!=", "<", "<=", ">", ">=":
			lo, lok := fastOperand(n.Left)
			ro, rok := fastOperand(n.Right)
			if !lok || !rok || (lo.path == nil) == (ro.path == nil) {
				return nil // two constants, or two fields: general path
			}
			op := n.Operator
			if lo.path == nil { // constant on the left: mirror
				lo, ro = ro, lo
				op = map[string]string{"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
			}
			return compare(lo.path, op, ro)
		case "in":
			lo, lok := fastOperand(n.Left)
			arr, isArr := n.Right.(*ast.ArrayNode)
			if !lok || lo.path == nil || !isArr {
				return nil
			}
			var consts []operand
			var kind fastjson.Type = -1
			for _, e := range arr.Nodes {
				c, ok := fastOperand(e)
				if !ok || c.path != nil {
					return nil
				}
				k := fastjson.TypeNull
				switch c.konst.(type) {
				case string:
					k = fastjson.TypeString
				case float64:
					k = fastjson.TypeNumber
				}
				if k == fastjson.TypeNull || (kind != -1 && k != kind) {
					return nil // mixed or odd constants: general path
				}
				kind = k
				consts = append(consts, c)
			}
			path := lo.path
			return func(m *connectors.Message) (bool, bool) {
				v, ok := getPath(m, path)
				if !ok || v == nil || v.Type() != kind {
					return false, false // expr's own rules (often an error)
				}
				for _, c := range consts {
					eq, ok := equal(v, c)
					if !ok {
						return false, false
					}
					if eq {
						return true, true
					}
				}
				return false, true
			}
		}
	case *ast.UnaryNode:
		if n.Operator == "not" || n.Operator == "!" {
			f := compileFast(n.Node)
			if f == nil {
				return nil
			}
			return func(m *connectors.Message) (bool, bool) {
				b, ok := f(m)
				return !b, ok
			}
		}
	case *ast.BoolNode:
		v := n.Value
		return func(*connectors.Message) (bool, bool) { return v, true }
	}
	return nil
}

func fastOperand(n ast.Node) (operand, bool) {
	switch n := n.(type) {
	case *ast.IdentifierNode:
		if len(n.Value) > 0 && n.Value[0] == '_' {
			return operand{}, false // record variables: general path
		}
		return operand{path: []string{n.Value}}, true
	case *ast.MemberNode:
		prop, ok := n.Property.(*ast.StringNode)
		if !ok || n.Optional {
			return operand{}, false
		}
		base, ok := fastOperand(n.Node)
		if !ok || base.path == nil {
			return operand{}, false
		}
		return operand{path: append(append([]string(nil), base.path...), prop.Value)}, true
	case *ast.StringNode:
		return operand{konst: n.Value}, true
	case *ast.IntegerNode:
		return operand{konst: float64(n.Value)}, true
	case *ast.FloatNode:
		return operand{konst: n.Value}, true
	case *ast.BoolNode:
		return operand{konst: n.Value}, true
	case *ast.NilNode:
		return operand{isNil: true}, true
	}
	return operand{}, false
}

// equal compares a field with a constant as expr would; ok=false when the
// types make it unsure.
func equal(v *fastjson.Value, c operand) (eq, ok bool) {
	if v == nil || v.Type() == fastjson.TypeNull {
		return c.isNil, true
	}
	if c.isNil {
		return false, true
	}
	switch k := c.konst.(type) {
	case string:
		if v.Type() != fastjson.TypeString {
			return false, v.Type() != fastjson.TypeObject && v.Type() != fastjson.TypeArray
		}
		return string(v.GetStringBytes()) == k, true
	case float64:
		if v.Type() != fastjson.TypeNumber {
			return false, v.Type() == fastjson.TypeString || v.Type() == fastjson.TypeTrue || v.Type() == fastjson.TypeFalse
		}
		return v.GetFloat64() == k, true
	case bool:
		switch v.Type() {
		case fastjson.TypeTrue:
			return k, true
		case fastjson.TypeFalse:
			return !k, true
		case fastjson.TypeString, fastjson.TypeNumber:
			return false, true
		}
	}
	return false, false
}

// getPath fetches a field; ok=false when a parent on a dotted path is
// missing or not an object, which expr reports as an error.
func getPath(m *connectors.Message, path []string) (*fastjson.Value, bool) {
	for i := 1; i < len(path); i++ {
		if p := m.Get(path[:i]...); p == nil || p.Type() != fastjson.TypeObject {
			return nil, false
		}
	}
	return m.Get(path...), true
}

func compare(path []string, op string, c operand) fastBool {
	return func(m *connectors.Message) (bool, bool) {
		v, ok := getPath(m, path)
		if !ok {
			return false, false
		}
		switch op {
		case "==":
			return equal(v, c)
		case "!=":
			eq, ok := equal(v, c)
			return !eq, ok
		}
		if v == nil || c.isNil {
			return false, false // an error in expr; let it say so
		}
		switch k := c.konst.(type) {
		case float64:
			if v.Type() != fastjson.TypeNumber {
				return false, false
			}
			x := v.GetFloat64()
			switch op {
			case "<":
				return x < k, true
			case "<=":
				return x <= k, true
			case ">":
				return x > k, true
			case ">=":
				return x >= k, true
			}
		case string:
			if v.Type() != fastjson.TypeString {
				return false, false
			}
			cmp := bytes.Compare(v.GetStringBytes(), []byte(k))
			switch op {
			case "<":
				return cmp < 0, true
			case "<=":
				return cmp <= 0, true
			case ">":
				return cmp > 0, true
			case ">=":
				return cmp >= 0, true
			}
		}
		return false, false
	}
}
