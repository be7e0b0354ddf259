import json, jinja2, jinja2.ext, jinja2.exceptions
from jinja2.sandbox import ImmutableSandboxedEnvironment
def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
def raise_exception(m): raise jinja2.exceptions.TemplateError(m)
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters['tojson'] = tojson
env.globals['raise_exception'] = raise_exception
cases = [
 ("scoping: set in a loop does not leak, namespace does", "{% set x = 1 %}{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set x = x + 1 %}{% set ns.n = ns.n + i %}{{ x }}{% endfor %}|{{ x }}|{{ ns.n }}", {}),
 ("loop variables", "{% for a in ['p','q','r'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}", {}),
 ("loop filter, else, break, continue", "{% for i in range(10) if i % 2 == 0 %}{% if i == 6 %}{% break %}{% endif %}{% if i == 2 %}{% continue %}{% endif %}{{ i }}{% else %}none{% endfor %}{% for i in [] %}x{% else %}empty{% endfor %}", {}),
 ("whitespace control and trim/lstrip blocks", "a\n  {% if true %}\n    b\n  {% endif %}\nc {{- ' d ' -}} e\n{#- comment -#}\nf\n", {}),
 ("python repr of values", "{{ [1, 'a', none, true, 1.5, {'k': [2.0]}] }}|{{ none }}|{{ 10 / 4 }}|{{ 7 // 2 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 1e20 }}|{{ 0.1 + 0.2 }}", {}),
 ("tojson forms", "{{ d | tojson }}|{{ d | tojson(indent=2) }}|{{ d | tojson(sort_keys=true) }}|{{ 'ü\"\\n' | tojson }}|{{ [] | tojson }}|{{ 3.0 | tojson }}", {"d": {"b": [1, 2.5, None, True], "a": "x"}}),
 ("string methods", "{{ '  hi  '.strip() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b  c'.split() }}|{{ 'a-b-c'.split('-', 1) }}|{{ 'x.y.z'.rsplit('.', 1) }}|{{ 'Hello'.startswith(('He', 'x')) }}|{{ 'abc'.replace('b', 'B') }}|{{ 'hello world'.title() }}|{{ 'AbC'.lower() }}{{ 'abc'.upper() }}|{{ 'xxhixx'.strip('x') }}|{{ '{} and {}'.format(1, 'two') }}", {}),
 ("slices and indexes", "{{ s[1:3] }}{{ s[::-1] }}{{ s[-2:] }}{{ l[1:] }}{{ l[-1] }}{{ l[5] }}|{{ l[:-1] }}", {"s": "abcdef", "l": [1, 2, 3]}),
 ("filters", "{{ l | join(', ') }}|{{ l | length }}|{{ l | first }}{{ l | last }}|{{ l | reverse | list }}|{{ l | sort | list }}|{{ ['b','A','a'] | unique | list }}|{{ ' x ' | trim }}|{{ 'a' | upper }}|{{ undefined_thing | default('dflt') }}|{{ '' | default('e', true) }}|{{ 3.7 | int }}|{{ '12' | int + 1 }}|{{ 'x' | replace('x', 'y') }}|{{ l | map('string') | join }}|{{ [1, 2, 3] | sum }}|{{ l | max }}{{ l | min }}", {"l": [3, 1, 2]}),
 ("select, map and dictsort", "{{ ms | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }}|{{ ms | rejectattr('role', 'eq', 'user') | list | length }}|{{ d | dictsort }}|{{ d | items | list }}|{{ ms | map(attribute='missing', default='z') | list }}", {"ms": [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}], "d": {"b": 1, "a": 2, "C": 3}}),
 ("tests", "{{ x is defined }}{{ y is defined }}{{ none is none }}{{ 'a' is string }}{{ d is mapping }}{{ l is iterable }}{{ l is sequence }}{{ 3 is number }}{{ 3 is integer }}{{ 3.0 is float }}{{ 4 is even }}{{ 3 is odd }}{{ 'a' is in 'abc' }}{{ x is not none }}{{ true is true }}{{ false is sameas false }}{{ 6 is divisibleby 3 }}", {"x": 1, "d": {}, "l": []}),
 ("macros with defaults and keyword arguments", "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', greeting='Hi') }} {{ greet(greeting='Yo', name='Cy') }}", {}),
 ("set block and filter block", "{% set body %}  inner {{ 1 + 1 }}  {% endset %}[{{ body }}][{{ body | trim }}]{% filter upper %}shout {{ 'it' }}{% endfilter %}", {}),
 ("conditional expressions and comparisons", "{{ 'yes' if 1 < 2 < 3 else 'no' }}{{ 'a' if false }}|{{ 1 == 1.0 }}{{ 'a' ~ 1 ~ none }}{{ not 0 }}{{ [] or 'empty' }}{{ 0 and 1 }}{{ 'b' in ['a', 'b'] }}{{ 'k' in {'k': 1} }}{{ 3 not in [1] }}", {}),
 ("dict methods and attribute access", "{{ d.get('a') }}{{ d.get('zz', 'none') }}{{ d['a'] }}{{ d.a }}{% for k, v in d.items() %}[{{ k }}={{ v }}]{% endfor %}{{ d.keys() | list }}{{ d.missing is defined }}", {"d": {"a": 1, "b": [2]}}),
 ("raise_exception", "{% if true %}{{ raise_exception('Custom failure: ' ~ 42) }}{% endif %}", {}),
 ("mutating a list is refused", "{% set l = [1] %}{{ l.append(2) }}", {}),
 ("safe markup escapes what is added to it", "{{ ('<b>' | safe) + '<i>' }}|{{ '<x>' | e }}|{{ ('&' | safe) ~ '<' }}", {}),
 ("strings with escapes and concatenation", "{{ 'a\\tb' }}|{{ \"it's\" }}|{{ 'x' 'y' }}|{{ '\\u00e9' }}|{{ 'line1\\nline2' | indent(2) }}|{{ 'l1\\nl2' | indent(4, true) }}", {}),
 ("dict literals keep int keys", "{% set d = {0: 'a', 512: 'b', 3: 'c'} %}{% for k, v in d | dictsort %}{{ k }}={{ v }}{{ 1 <= k }};{% endfor %}{{ d[512] }}{{ d.get(3) }}{{ 0 in d }}{{ '0' in d }}|{{ d }}|{{ d | tojson }}|{{ d.items() | list }}|{{ d | list }}|{{ {1.0: 'x'}[1] }}{{ {none: 'n'}[none] }}", {}),
 ("recursive loops", "{% for item in tree recursive %}[{{ loop.depth }}:{{ item.name }}{% if item.children %}({{ loop(item.children) }}){% endif %}]{% endfor %}", {"tree": [{"name": "a", "children": [{"name": "b", "children": []}, {"name": "c"}]}, {"name": "d"}]}),
 ("calling a loop that is not recursive", "{% for x in [1, 2] %}{{ loop(x) }}{% endfor %}", {}),
 ("call blocks and caller", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold {{ 1 + 1 }}{% endcall %}|{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}{% call(x) each([1, 2]) %}<{{ x }}>{% endcall %}", {}),
 ("include has no loader", "{% include 'other.jinja' %}", {}),
 ("format with an unclosed field", "{{ '{x'.format() }}", {}),
 ("format with a missing name", "{{ '{x}'.format() }}", {}),
 ("format with a missing position", "{{ '{}{}'.format(1) }}", {}),
 ("format cannot reach attributes of the object model", "[{{ '{0.__class__}'.format(1) }}]", {}),
 ("underscore attributes are undefined in the sandbox", "[{{ ''.__class__ }}|{{ x.__class__ }}|{{ {'_x': 1}._x }}|{{ {'_x': 1}['_x'] }}]", {"x": []}),
 ("using an unsafe attribute is a security error", "{{ ''.__class__.__mro__ }}", {}),
 ("range beyond MAX_RANGE", "{{ range(100001) | length }}", {}),
 ("range at MAX_RANGE", "{{ range(0, 1000000, 10) | length }}", {}),
 ("sequence repetition on either side", "{{ 'ab' * 3 }}{{ 3 * 'ab' }}{{ [1] * 2 }}{{ 'x' * 0 }}{{ 'x' * -1 }}", {}),
 ("tojson of a namespace", "{% set ns = namespace(x=1) %}{{ ns | tojson }}", {}),
 ("tojson of a shared list is not circular", "{% set a = [1] %}{{ {'k': a, 'j': a} | tojson }}", {}),
 ("tuple slices stay tuples", "{{ (1, 2, 3)[1:] }}{{ 'abcdef'[::2] }}", {}),
 ("big ints", "{{ 2 ** 62 }}|{{ -7 // 2 }}|{{ 9223372036854775807 }}", {}),
]
out = []
for name, tpl, ctx in cases:
    try:
        r = {"name": name, "template": tpl, "context": ctx, "output": env.from_string(tpl).render(**ctx)}
    except Exception as e:
        r = {"name": name, "template": tpl, "context": ctx, "error": f"{type(e).__name__}: {e}"}
    out.append(r)
print(json.dumps(out, ensure_ascii=False, indent=1))
