"""The README's runnable Python examples run as pasted, twice, on a machine with no AWS
credentials, against a proxy started as ``make run`` starts it (no options: the embedded
moto server).

An example is runnable when the line right above its fence is a ``<!-- readme-test ...
-->`` comment; the others are fragments. Each runs in a fresh interpreter whose environment
holds no ``AWS_*`` variable and whose home holds no ``~/.aws``: what a newcomer's machine
has. The only change made to the text is the port: the example's
``http://127.0.0.1:8111`` (and ``dax://127.0.0.1:8111``) becomes the test proxy's address,
so that the test never takes the port a developer's own ``make run`` may hold. The proxy
runs with that same bare environment, so its placeholder credentials are tried too. A
``<!-- readme-test-js ... -->`` mark above a ``js`` fence is the JavaScript DAX client's
example, run the same way with node in ``tests/js`` (where its packages are installed).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import running_proxy
from tests.integration.node_scripts import JS_DIR, node_with

README = Path(__file__).resolve().parents[2] / "README.md"
MARK = "<!-- readme-test"
JS_MARK = "<!-- readme-test-js"  # a JavaScript example, run with node in tests/js
MAKE_RUN_URL = "http://127.0.0.1:8111"
MAKE_RUN_DAX_URL = "dax://127.0.0.1:8111"  # the same port, in DAX's client's spelling
# A marked example: the comment line, then a fenced python block.
SNIPPET = re.compile(r"^<!-- readme-test[^\n]*-->\n```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
JS_SNIPPET = re.compile(
    r"^<!-- readme-test-js[^\n]*-->\n```js\n(.*?)^```$", re.MULTILINE | re.DOTALL
)
RUN_TIMEOUT = 60.0

pytestmark = pytest.mark.slow


def runnable_snippets(text: str) -> list[str]:
    snippets = SNIPPET.findall(text)
    # Every mark belongs to a python block right below it: a mark that lost its block, or a
    # block that moved away from its mark, fails here rather than going unchecked.
    js = JS_SNIPPET.findall(text)
    assert len(js) == text.count(JS_MARK), "a readme-test-js mark without a js block"
    assert len(snippets) + len(js) == text.count(MARK), "a readme-test mark without its block"
    return snippets


def bare_environment(home: Path) -> dict[str, str]:
    """The process's environment without any AWS setting, with an empty home; instance
    metadata stays off, so a missing credential fails at once instead of calling out."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**kept, "HOME": str(home), "AWS_EC2_METADATA_DISABLED": "true"}


def run_snippet(
    code: str, environment: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def test_the_first_example_is_marked() -> None:
    """The 'Use it' example is the one people paste first: it must be among those run."""
    text = README.read_text(encoding="utf-8")
    use_it = text[text.index("## Use it") :]
    first_fence = use_it.index("```python")
    assert MARK in use_it[:first_fence], "the first example of 'Use it' is not marked"
    snippets = runnable_snippets(text)
    assert snippets and "create_table" in snippets[0] and MAKE_RUN_URL in snippets[0]


def test_the_readme_examples_run_as_pasted_twice_without_credentials(tmp_path: Path) -> None:
    snippets = runnable_snippets(README.read_text(encoding="utf-8"))
    assert snippets
    home = tmp_path / "home"
    home.mkdir()
    environment = bare_environment(home)
    # No options, as ``make run`` starts it (the port aside), in the same bare environment.
    with running_proxy(env=environment) as proxy:
        url = proxy.url
        for number, snippet in enumerate(snippets, 1):
            assert MAKE_RUN_URL in snippet, f"example {number} does not use make run's address"
            code = snippet.replace(MAKE_RUN_URL, url).replace(
                MAKE_RUN_DAX_URL, url.replace("http://", "dax://")
            )
            outputs = []
            for run in ("first", "second"):
                done = run_snippet(code, environment, tmp_path)
                assert done.returncode == 0, (
                    f"README example {number}, {run} run, exited {done.returncode}:\n"
                    f"{done.stderr}\n--- the example:\n{snippet}"
                )
                outputs.append(done.stdout)
            assert outputs[0] == outputs[1], f"example {number} answered differently the 2nd time"
        first = run_snippet(snippets[0].replace(MAKE_RUN_URL, url), environment, tmp_path)
        log = proxy.log()
    assert first.stdout == "{'id': {'S': '42'}, 'name': {'S': 'Ada'}}\n"
    # What the README says next to the example: the proxy warns about --mode dax as it starts.
    assert "--mode dax: " in log and "--mode strict" in log, log


def test_the_example_needs_its_credentials(tmp_path: Path) -> None:
    """Proof that the environment really is bare: without the example's placeholder
    credentials, boto3 finds none (the failure the README's example once had)."""
    home = tmp_path / "home"
    home.mkdir()
    code = (
        "import boto3, botocore.exceptions\n"
        "c = boto3.client('dynamodb', endpoint_url='http://127.0.0.1:9', region_name='us-east-1')\n"
        "try:\n"
        "    c.list_tables()\n"
        "except botocore.exceptions.NoCredentialsError:\n"
        "    print('no credentials')\n"
    )
    done = run_snippet(code, bare_environment(home), tmp_path)
    assert (done.returncode, done.stdout) == (0, "no credentials\n"), done.stderr


def test_the_readme_javascript_example_runs_as_pasted_twice(tmp_path: Path) -> None:
    """The DAX client's JavaScript example, with node in ``tests/js`` (where its packages
    are), in the same bare environment, after the first example made the table."""
    text = README.read_text(encoding="utf-8")
    [snippet] = JS_SNIPPET.findall(text)
    node = node_with(("@amazon-dax-sdk/client-dax", "@amazon-dax-sdk/lib-dax"), "the JS example")
    home = tmp_path / "home"
    home.mkdir()
    environment = bare_environment(home)
    with running_proxy(env=environment) as proxy:
        table = run_snippet(
            runnable_snippets(text)[0].replace(MAKE_RUN_URL, proxy.url), environment, tmp_path
        )
        assert table.returncode == 0, table.stderr
        assert MAKE_RUN_DAX_URL in snippet
        code = snippet.replace(MAKE_RUN_DAX_URL, proxy.url.replace("http://", "dax://"))
        outputs = []
        for _ in range(2):
            done = subprocess.run(
                [node, "--input-type=module", "-e", code],
                cwd=JS_DIR,
                env=environment,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
                check=False,
            )
            assert done.returncode == 0, f"{done.stderr}\n--- the example:\n{snippet}"
            outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0] == (
        "{ id: { S: '8' }, name: { S: 'Barbara' } }\n{ id: '8', name: 'Barbara' }\n"
    ), outputs[0]
