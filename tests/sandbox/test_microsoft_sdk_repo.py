"""Microsoft's own end-to-end tests for its Python SDK, run unchanged against a sandbox.

Point `D365NB_SDK_REPO` at a checkout of microsoft/PowerPlatform-DataverseClient-Python;
without it the test is skipped (the repository is not vendored here).  The tests ask for
an `InteractiveBrowserCredential`; a conftest beside them swaps in the sandbox's
confidential client, and `DATAVERSE_URL` points them at the sandbox.  Last run: 11 of 11
of `tests/e2e/test_relationships_e2e.py` pass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from d365nb.sandbox import Sandbox, start

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

_CONFTEST = """
import json, os
from urllib.parse import urlsplit
import azure.identity

_INFO = json.loads(os.environ["D365NB_SANDBOX_JSON"])


def _credential(*args, **kwargs):
    return azure.identity.ClientSecretCredential(
        _INFO["tenant"], _INFO["confidential_client_id"], _INFO["client_secret"],
        authority=urlsplit(_INFO["base_url"]).netloc, connection_verify=_INFO["ca_cert"],
        disable_instance_discovery=True,
    )


azure.identity.InteractiveBrowserCredential = _credential
"""


@pytest.mark.skipif(not os.environ.get("D365NB_SDK_REPO"), reason="D365NB_SDK_REPO not set")
def test_microsofts_relationship_e2e_tests_pass(tmp_path: Path) -> None:
    source = Path(os.environ["D365NB_SDK_REPO"]) / "tests" / "e2e" / "test_relationships_e2e.py"
    shutil.copy(source, tmp_path / source.name)
    (tmp_path / "conftest.py").write_text(_CONFTEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    e2e: live service\n")
    sb: Sandbox
    with start(data_dir=tmp_path / "sandbox", database=":memory:", rows=20) as sb:
        env = {
            **os.environ,
            "D365NB_SANDBOX_JSON": json.dumps(sb.info()),
            "DATAVERSE_URL": sb.base_url,
            "REQUESTS_CA_BUNDLE": sb.ca_cert,
        }
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", source.name],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert done.returncode == 0, done.stdout[-4000:]
