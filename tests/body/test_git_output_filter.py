"""The filter over git's output drops every diff section that names a denied path, however git spells it."""

from __future__ import annotations

from body_mcp.git import COMMIT_MARK, exclude_pathspecs, filter_patch
from body_mcp.policy import PathPolicy

POLICY = PathPolicy(denied=[".env*", "*.pem", "secrets/keys"], read_only=[".git"])


def _denied(path: str) -> bool:
    return POLICY.classify_parts(tuple(path.split("/")))[0] == "denied"


def _section(a: str, b: str, body: str = "@@ -1 +1 @@\n-old\n+new\n") -> str:
    return f"diff --git {a} {b}\nindex 1..2 100644\n--- {a}\n+++ {b}\n{body}"


def test_sections_naming_a_denied_path_are_dropped_and_the_rest_kept() -> None:
    kept = _section("a/src/app.py", "b/src/app.py")
    text = "".join(
        [
            kept,
            _section("a/.env", "b/.env", "@@ -1 +1 @@\n-SECRET=1\n+SECRET=2\n"),
            _section("a/config/.env.local", "b/config/.env.local"),
            _section('"a/dir with space/k\\303\\251y.pem"', '"b/dir with space/k\\303\\251y.pem"'),
            _section("a/secrets/keys/id", "b/secrets/keys/id"),
            "diff --git a/x y b/x y\nnew file mode 100644\n--- /dev/null\n+++ b/x y\t\n@@ -0,0 +1 @@\n+ok\n",
        ]
    )
    out = filter_patch(text, _denied)
    assert "SECRET" not in out and ".env" not in out and ".pem" not in out and "secrets/keys" not in out
    assert kept in out and "+ok" in out


def test_a_rename_to_or_from_a_denied_path_and_a_binary_one_are_dropped() -> None:
    rename = "diff --git a/notes.txt b/.env\nsimilarity index 90%\nrename from notes.txt\nrename to .env\n"
    binary = "diff --git a/cert.pem b/cert.pem\nnew file mode 100644\nBinary files /dev/null and b/cert.pem differ\n"
    mode_only = "diff --git a/.env.prod b/.env.prod\nold mode 100644\nnew mode 100755\n"
    assert filter_patch(rename + binary + mode_only, _denied) == ""


def test_a_log_keeps_its_commit_lines_around_dropped_sections() -> None:
    text = f"{COMMIT_MARK}abc\n\n" + _section("a/.env", "b/.env") + f"{COMMIT_MARK}def\n\n" + _section("a/x", "b/x")
    out = filter_patch(text, _denied)
    assert out.startswith(f"{COMMIT_MARK}abc\n\n{COMMIT_MARK}def\n") and "a/x" in out and ".env" not in out


def test_exclusions_cover_any_depth_and_everything_below() -> None:
    assert exclude_pathspecs([".env*", "secrets/keys"]) == [
        ":(exclude,glob,icase)**/.env*",
        ":(exclude,glob,icase)**/.env*/**",
        ":(exclude,glob,icase)secrets/keys",
        ":(exclude,glob,icase)secrets/keys/**",
    ]
