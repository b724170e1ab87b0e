"""`esgf-ha demo`: the whole federation on this machine, with sample data and a tour."""

from __future__ import annotations

import shutil
import signal
import tempfile
from pathlib import Path

import click


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command(
    epilog="""\b
Examples:
  esgf-ha demo                       # runs until Ctrl-C, printing what to try
  esgf-ha demo --check               # the scenario unattended: exit 0 only if all is well
  esgf-ha demo --state-dir demo      # keep the state (sample data, stores) between runs

Uses 127.0.1.1 (master :8000) and 127.0.1.2-4 (each site's index :8080, data node :8081
and its own DNS server :8053, status :8054); Linux routes all of 127.0.0.0/8 to loopback.
""",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="where the demo keeps its state (default: a fresh temporary directory)",
)
@click.option("--datasets", default=6, show_default=True, help="CMIP6 sample datasets")
@click.option(
    "--check",
    is_flag=True,
    help="verify that every site answers the same searches and serves the same files, then "
    "kill a whole site (its DNS server too) under load and check the DNS failover; exit 0 "
    "only if all held",
)
@click.option("--json", "as_json", is_flag=True, help="with --check: print the figures as JSON")
@click.option(
    "--dns-port",
    default=8053,
    show_default=True,
    help="port of the DNS server at every site (53 lets a system resolver use them)",
)
def demo(state_dir: Path | None, datasets: int, check: bool, as_json: bool, dns_port: int) -> None:
    """Three sites, each with its own health-checked DNS server, and a master on loopback,
    with sample data."""
    from esgf_ha.common.logs import setup_logging
    from esgf_ha.federation.demo import Demo, DemoFailed, summary_line
    from esgf_ha.federation.demo import check as run_check

    setup_logging("warning")
    temp = None
    if state_dir is None:
        temp = Path(tempfile.mkdtemp(prefix="esgf-ha-demo-"))
        state_dir = temp
    scenario = Demo(state_dir.resolve(), say=lambda text: click.echo(text, err=True),
                    datasets=datasets, dns_port=dns_port)  # fmt: skip
    # Ctrl-C and SIGTERM stop the children cleanly, even when started with SIGINT ignored
    # (as a shell without job control starts background commands)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    try:
        scenario.start()
        scenario.publish()
        scenario.wait_for_replication()
        if check:
            ok, result = run_check(scenario)
            if as_json:
                click.echo(summary_line(result))
            for problem in result["problems"]:
                click.echo(f"problem: {problem}", err=True)
            f = result["failover"]
            click.echo(
                f"failover: the DNS dropped the killed site after "
                f"{f['dns_dropped_dead_site_after_s']} s and answered it again "
                f"{f['dns_answered_site_again_after_ready_s']} s after it was ready; "
                f"{f['requests']} requests through the service names, "
                f"{f['failed_requests']} failed, {f['wrong_answers']} wrong, "
                f"{f['retried_on_next_address']} retried on the next address",
                err=True,
            )
            if not ok:
                raise click.ClickException("demo check failed")
            click.echo("demo check passed", err=True)
            return
        click.echo(scenario.tour(), nl=False)
        click.echo("Press Ctrl-C to stop the federation.", err=True)
        scenario.supervisor.run()
    except DemoFailed as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
    finally:
        scenario.stop()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
