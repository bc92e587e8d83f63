"""The `gate` command run as a person runs it: check-config, explain and demo (DESIGN §4)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from gate import __version__
from tests.support import BUILD, CUSTOMER, GATE_COMMAND, PARTNER_A

ROOT = Path(__file__).resolve().parent.parent
C = f"/v1/customers/{CUSTOMER}"


def gate(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m gate ARGS` from the repository root; the environment is the test's."""
    return subprocess.run(
        [*GATE_COMMAND, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gate.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def fields(stdout: str) -> dict[str, str]:
    """`explain` output as {label: value}."""
    pairs = (line.split(":", 1) for line in stdout.splitlines() if ":" in line)
    return {label.strip(): value.strip() for label, value in pairs}


# -- check-config ------------------------------------------------------------


def test_check_config_ok() -> None:
    """§4: check-config of a valid file exits 0 and says so."""
    result = gate("check-config", "config/gate.toml")
    assert result.returncode == 0
    assert result.stdout == (
        "config/gate.toml: ok (9 rules, mode enforce)\nno changes against the built-in defaults\n"
    )
    assert result.stderr == ""


def test_check_config_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """§3/§4: check-config validates the config the gate would run with, env included."""
    monkeypatch.setenv("GATE_POLICY__MODE", "observe")
    result = gate("check-config", "config/gate.toml")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "config/gate.toml: ok (9 rules, mode observe)",
        "changes against the built-in defaults:",
        '  policy.mode: "enforce" -> "observe"',
    ]


def test_check_config_names_each_bad_key(tmp_path: Path) -> None:
    """§4: on errors check-config exits non-zero with one line per bad key, saying why."""
    path = write(
        tmp_path,
        '[server]\nlisten = "nope"\n[policy]\nmdoe = "observe"\nenforce_percent = 200\n'
        '[upstream]\nurl = "ftp://x"\n',
    )
    result = gate("check-config", path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 4
    assert all(line.startswith(f"{path}: ") for line in lines)
    keys = sorted(line.removeprefix(f"{path}: ").split(":")[0] for line in lines)
    assert keys == ["policy.enforce_percent", "policy.mdoe", "server.listen", "upstream.url"]
    assert all(line.split(": ", 2)[2] for line in lines)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        pytest.param('[policy\nmode = "observe"\n', "not valid TOML", id="invalid-toml"),
        pytest.param(None, "cannot read", id="missing-file"),
    ],
)
def test_check_config_unreadable(tmp_path: Path, text: str | None, says: str) -> None:
    """§4: a file that is missing or not TOML is refused in one line naming the file."""
    path = write(tmp_path, text) if text is not None else str(tmp_path / "absent.toml")
    result = gate("check-config", path)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{path}: {says}")


# -- explain -----------------------------------------------------------------


def test_explain_gated_call() -> None:
    """§4/R1: explain names the rule, transaction kind, customer and that the call is gated."""
    result = gate("explain", "POST", f"{C}/orders")
    assert result.returncode == 0
    assert result.stderr == ""
    out = fields(result.stdout)
    assert out["call"] == f"POST {C}/orders"
    assert out["rule"] == "create-order"
    assert out["transaction"] == "new_purchase"
    assert out["customer"] == CUSTOMER
    assert out["gated"] == "yes, always"
    assert out["decision"].startswith("mode enforce for (any partner)")
    assert out["decision"].endswith("blocked (403) unless accepted")


def test_explain_normalises_like_the_proxy() -> None:
    """§2: explain classifies the normalised path, case, slashes, dots and query aside."""
    result = gate("explain", "post", f"//V1/Customers/{CUSTOMER.upper()}/./x/../%6Frders/?a=1")
    assert result.returncode == 0
    out = fields(result.stdout)
    assert out["call"] == f"POST /V1/Customers/{CUSTOMER.upper()}/orders"
    assert out["rule"] == "create-order"
    assert out["customer"] == CUSTOMER


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", f"{C}/orders", id="read"),
        pytest.param("POST", "/v1/customers", id="create-customer"),
        pytest.param("DELETE", f"{C}/orders/o1", id="other-call"),
    ],
)
def test_explain_pass_through(method: str, path: str) -> None:
    """§4/R2: explain says a call that is not gated passes with no acceptance lookup."""
    result = gate("explain", method, path)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        f"call:        {method} {path}",
        "gated:       no (pass-through: forwarded untouched, no acceptance lookup)",
    ]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(f"{C}%2Forders", id="encoded-slash"),
        pytest.param(f"{C}%5Corders", id="encoded-backslash"),
        pytest.param(f"{C}/orders;x=1", id="matrix-param"),
    ],
)
def test_explain_refused_path(path: str) -> None:
    """§4/§2: explain shows the 400 AmbiguousPath the proxy would answer."""
    result = gate("explain", "POST", path)
    assert result.returncode == 0
    [line] = result.stdout.splitlines()
    assert line.startswith("refused: 400 AmbiguousPath: ")


def test_explain_confirmation() -> None:
    """§4/R5: explain says a confirmation is checked, forwarded and marks the pair accepted."""
    out = fields(gate("explain", "POST", f"{C}/agreements").stdout)
    assert out["rule"] == "confirm-acceptance"
    assert out["transaction"] == "confirmation"
    assert out["gated"].startswith("confirmation")


@pytest.mark.parametrize(
    ("config", "gated"),
    [
        pytest.param("", "yes, when the body's quantity differs from the current one", id="seats"),
        pytest.param(
            '[policy]\nsubscription_edits = "all"\n',
            "yes, always (policy.subscription_edits = all)",
            id="all",
        ),
    ],
)
def test_explain_subscription_edit(tmp_path: Path, config: str, gated: str) -> None:
    """§4/§1.1: explain says when a subscription PATCH is a gated seat change."""
    out = fields(
        gate(
            "explain", "--config", write(tmp_path, config), "PATCH", f"{C}/subscriptions/s1"
        ).stdout
    )
    assert out["transaction"] == "seat_change"
    assert out["gated"] == gated


@pytest.mark.parametrize(
    ("config", "partner", "decision"),
    [
        pytest.param('[upstream]\ncloud = "usgov"\n', None, "exempt (national_cloud)", id="usgov"),
        pytest.param('[policy]\nmode = "off"\n', None, "exempt (policy_off)", id="off"),
        pytest.param(
            f'[policy.partners."{PARTNER_A.upper()}"]\nmode = "observe"\n',
            PARTNER_A.upper(),
            f"mode observe for {PARTNER_A}",
            id="partner-override",
        ),
        pytest.param(
            f'[policy.partners."{PARTNER_A}"]\nmode = "observe"\n',
            None,
            "mode enforce for (any partner)",
            id="override-needs-partner",
        ),
    ],
)
def test_explain_decision(tmp_path: Path, config: str, partner: str | None, decision: str) -> None:
    """§4/R8/§3: explain applies the cloud, the mode and the partner's override offline."""
    extra = ["--partner", partner] if partner else []
    result = gate("explain", "--config", write(tmp_path, config), *extra, "POST", f"{C}/orders")
    assert result.returncode == 0
    assert fields(result.stdout)["decision"].startswith(decision)


def test_explain_compares_with_the_current_subscription(tmp_path: Path) -> None:
    """§4/§1.2: --current FILE names the kind an edit makes; without --body it is refused."""
    body, current = tmp_path / "body.json", tmp_path / "current.json"
    body.write_text('{"quantity": 10, "billingCycle": "annual"}')
    current.write_text('{"quantity": 10, "billingCycle": "monthly", "termDuration": "P1Y"}')
    profile = str(ROOT / "config" / "partner-center-2026.toml")
    args = ("--config", profile, "--body", str(body), "--current", str(current))
    result = gate("explain", *args, "PATCH", f"{C}/subscriptions/s1")
    assert result.returncode == 0, result.stderr
    out = fields(result.stdout)
    assert (out["current"], out["edit"]) == ("changes billingCycle; same quantity", "term_change")
    seats = gate("explain", "--body", str(body), "--current", str(current), "PATCH",
                 f"{C}/subscriptions/s1")  # fmt: skip
    assert fields(seats.stdout)["gated"].startswith("no: it changes no gated field")
    alone = gate("explain", "--current", str(current), "PATCH", f"{C}/subscriptions/s1")
    assert (alone.returncode, alone.stdout) == (2, "")
    assert alone.stderr.startswith("--current needs --body")
    missing = gate("explain", "--body", str(body), "--current", str(tmp_path / "nope.json"),
                   "PATCH", f"{C}/subscriptions/s1")  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr.startswith(f"{tmp_path / 'nope.json'}: cannot read")


def test_explain_with_bad_config(tmp_path: Path) -> None:
    """§4: explain refuses to explain under a config it cannot load, naming the bad key."""
    path = write(tmp_path, '[policy]\nmode = "strict"\n')
    result = gate("explain", "--config", path, "POST", f"{C}/orders")
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{path}: policy.mode: ")


# -- the rest ----------------------------------------------------------------


def test_demo_walks_through_block_confirm_allow() -> None:
    """§4: `gate demo` runs offline and checks itself: block -> confirm -> allow, then 2026."""
    result = gate("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo finished: all steps behaved as expected" in result.stdout
    assert ",Tailspin Toys,not_confirmed,none,,,no_agreement" in result.stdout  # its audit
    assert "3 customers: 2 confirmed, 1 not_confirmed, 0 unknown" in result.stdout
    assert "UNEXPECTED" not in result.stdout
    seed, _, today = result.stdout.partition("-- Partner Center today")
    assert "log: transaction=new_purchase decision=allowed reason=accepted source=confirmation" in (
        seed
    )
    steps = re.split(r"\n\n(?=\d+\. )", today)[1:4]  # the three steps after the 2026 heading
    direct, old, term = steps
    assert "-> 201 (ok)   X-Gate-Decision: allowed" in direct
    assert "source=direct" in direct
    for refused, kind in ((old, "new_purchase"), (term, "term_change")):
        assert "-> 403 (ok)   X-Gate-Decision: blocked" in refused
        assert '"reason": "before_accepted_since"' in refused
        assert f"log: transaction={kind} decision=blocked" in refused
    assert "2023-04-01T00:00:00Z or later" in old


def test_the_demo_runs_the_shipped_2026_profile() -> None:
    """§1.2: the demo's 2026 policy is config/partner-center-2026.toml's (it runs without it)."""
    from gate.config import load
    from gate.demo import PROFILE_2026

    assert load(ROOT / "config" / "partner-center-2026.toml").policy == PROFILE_2026


def test_version() -> None:
    """§4: `gate --version` names the version and the build that runs (issue 27)."""
    result = gate("--version")
    assert result.returncode == 0
    compiled = "compiled: mypyc" if BUILD == "mypyc" else "pure Python"
    assert result.stdout.strip() == f"gate {__version__} ({compiled})"


def test_no_command_is_a_usage_error() -> None:
    """§4: a command is required."""
    result = gate()
    assert result.returncode == 2
    assert "usage: gate" in result.stderr


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        pytest.param("[policy]\nenforce_from = 2999-01-01T00:00:00Z\n", "before_enforcement",
                     id="future-enforcement"),
        pytest.param("[policy]\nenforce_percent = 0\n", "rollout_observed", id="rollout-zero"),
        pytest.param('[policy]\nmode = "observe"\n', "observe_mode", id="observe"),
    ],
)  # fmt: skip
def test_explain_says_when_an_unconfirmed_call_would_pass(
    tmp_path: Path, config: str, reason: str
) -> None:
    """R7/§3: explain reports would-block, not a block, where the policy would forward."""
    result = gate("explain", "--config", write(tmp_path, config), "POST", f"{C}/orders")
    assert result.returncode == 0
    assert fields(result.stdout)["decision"].endswith(f"would-block ({reason}), forwarded")


def test_explain_does_not_guess_a_rollout_bucket(tmp_path: Path) -> None:
    """§3 enforce_percent: without --partner the bucket is unknown, and explain says so."""
    result = gate("explain", "--config", write(tmp_path, "[policy]\nenforce_percent = 50\n"),
                  "POST", f"{C}/orders")  # fmt: skip
    assert result.returncode == 0
    assert fields(result.stdout)["decision"].endswith("pass --partner")
