"""`curate studio up | down | status`: a local Label Studio in one command."""

from __future__ import annotations

import click

from curate.cli.common import deprecated_options, emit_json, handle_errors, json_option, quiet_option, say

DIR_HELP = "Data folder of the server (default: .curate/studio in the current folder)."


def _shown(path: str) -> str:
    """A path for people: relative to the current folder when it is under it."""
    import os

    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def register(main: click.Group) -> None:
    @main.group("studio")
    def studio() -> None:
        """Run a local Label Studio for labeling (installed into its own environment on first use).

        \b
        Example:
          curate studio up
          curate label push specs/support-triage --kind review
          curate studio down
        """

    @deprecated_options({"--dir": "--studio-dir"})
    @studio.command("up")
    @click.option("--studio-dir", "data_dir", default=".curate/studio", show_default=True, help=DIR_HELP)
    @click.option("--port", type=int, default=None, help="Port on 127.0.0.1 (default: a free one).")
    @click.option(
        "--show-token", is_flag=True, help="Also print the API token (it is never printed otherwise)."
    )
    @click.option(
        "--readers",
        type=click.IntRange(0, 8),
        default=1,
        show_default=True,
        help="More server processes on the same data, each on its own loopback port: a pull's export "
        "is cut into parts made in parallel by them (0: the main server alone).",
    )
    @json_option
    @quiet_option
    @handle_errors
    def up(
        data_dir: str, port: int | None, show_token: bool, readers: int, as_json: bool, quiet: bool
    ) -> None:
        """Install (if needed) and start Label Studio bound to 127.0.0.1, with the admin user and an API token.

        Prints the URL. The token lives in DIR/curate-credentials.json (mode 0600); `curate label ...` finds it.

        \b
        Example:
          curate studio up --port 8093
          curate studio up --studio-dir .curate/studio-b
        """
        from curate.labeling import server

        info = server.start(
            data_dir, port=port, readers=readers, progress=lambda m: say(m, quiet=quiet or as_json)
        )
        creds = server.credentials(info.data_dir)
        out = {
            **info.as_dict(),
            "username": creds["username"],
            "credentials_file": f"{info.data_dir}/{server.CREDENTIALS_FILE}",
        }
        if show_token:
            out["token"] = creds["token"]
        if as_json:
            emit_json(out)
        else:
            click.echo(info.url)
            say(
                f"Label Studio {info.version} is up (pid {info.pid}); log in as {creds['username']} (password in "
                f"{_shown(out['credentials_file'])}); stop it with `curate studio down`",
                quiet=quiet,
            )
            if show_token:
                click.echo(creds["token"])

    @deprecated_options({"--dir": "--studio-dir"})
    @studio.command("down")
    @click.option("--studio-dir", "data_dir", default=".curate/studio", show_default=True, help=DIR_HELP)
    @json_option
    @quiet_option
    @handle_errors
    def down(data_dir: str, as_json: bool, quiet: bool) -> None:
        """Stop the Label Studio process `curate studio up` started for DIR (and only that one).

        \b
        Example:
          curate studio down
        """
        from curate.labeling import server

        stopped = server.stop(data_dir)
        if as_json:
            emit_json({"stopped": stopped, "data_dir": data_dir})
        else:
            say("stopped" if stopped else "no server was running for " + data_dir, quiet=quiet)

    @deprecated_options({"--dir": "--studio-dir"})
    @studio.command("status")
    @click.option("--studio-dir", "data_dir", default=".curate/studio", show_default=True, help=DIR_HELP)
    @json_option
    @quiet_option
    @handle_errors
    def status(data_dir: str, as_json: bool, quiet: bool) -> None:
        """Say whether the server of DIR runs and answers. Exit 1 when it does not.

        \b
        Example:
          curate studio status --json
        """
        import sys

        from curate.labeling import server

        st = server.status(data_dir)
        if as_json:
            emit_json(st)
        elif not quiet:
            state = "up" if st["healthy"] else ("running, not answering" if st["running"] else "down")
            readers = [r for r in st.get("readers") or [] if r.get("running")]  # type: ignore[union-attr]
            click.echo(
                f"{state}"
                + (
                    f" {st['url']} (pid {st['pid']}"
                    + (
                        f", {len(readers)} reader process{'es' if len(readers) > 1 else ''}"
                        if readers
                        else ""
                    )
                    + ")"
                    if st["running"]
                    else ""
                )
            )
        sys.exit(0 if st["healthy"] else 1)
