"""The extraction the example tests rely on, on a hand-written page: were it to miss commands, the
example tests would pass on nothing."""
from __future__ import annotations

from doc_examples import demo_table_in_readme, readme_examples, readme_files

PAGE = '''# title

`calib score PRED GT` in a sentence is a synopsis, not an example.

```bash
python3 -m venv .venv && .venv/bin/calib demo out   # first
calib run r.toml --set stages.cap.per_class=3 \\
    --out "runs/a b"   # continued
# calib recipes       (a comment line)
calib stages --json > stages.json
```

```toml
# grid.toml
base = "decision-calibrated"
```

```
calib not-a-shell-block
```

<!-- demo-block: begin (written by tests/docs/demo_readme.py; do not edit by hand) -->
```
a  b
1  2
```

time line
<!-- demo-block: end -->
'''


def test_commands_of_shell_blocks_only_in_page_order():
    got = [(e.source, e.argv, e.stdout_to) for e in readme_examples(PAGE)]
    assert got == [
        ("README.md:6", ["demo", "out"], None),
        ("README.md:7", ["run", "r.toml", "--set", "stages.cap.per_class=3", "--out", "runs/a b"], None),
        ("README.md:10", ["stages", "--json"], "stages.json"),
    ]
    assert [e.text for e in readme_examples(PAGE)][1] == "calib run r.toml --set stages.cap.per_class=3 --out 'runs/a b'"


def test_files_shown_and_the_demo_table():
    assert readme_files(PAGE) == {"grid.toml": 'base = "decision-calibrated"\n'}
    assert demo_table_in_readme(PAGE) == "a  b\n1  2\n"
