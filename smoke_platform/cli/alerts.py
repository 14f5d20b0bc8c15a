"""`smoke alerts ls|ack|resolve`: close the loop on every alert and trouble signal."""

from __future__ import annotations

import typer

from smoke_platform.cli.app import app, require_broker

alerts = typer.Typer(help="Alerts and trouble signals: list, acknowledge, resolve with a verdict")
app.add_typer(alerts, name="alerts")


def _settings():  # type: ignore[no-untyped-def]
    from streaming.config import StreamSettings

    settings = StreamSettings()
    require_broker(settings.kafka())
    return settings


@alerts.command("ls")
def list_alerts(
    status: str = typer.Option("all", help="open, acknowledged, resolved or all"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line"),
) -> None:
    """Every alert and trouble signal with its state (open, acknowledged, resolved)."""
    import json

    from streaming.verdicts import lifecycles

    shown = [r for r in lifecycles(_settings()).values() if status in ("all", r.status)]
    for r in sorted(shown, key=lambda r: r.raised_at):
        if as_json:
            typer.echo(json.dumps({**r.as_event(), "status": r.status}))
            continue
        who = f" by {r.acknowledged_by}" if r.acknowledged_by else ""
        verdict = f" {r.verdict}" + (f" ({r.note})" if r.note else "") if r.verdict else ""
        typer.echo(f"{r.alert_id}  {r.source} {r.severity or '-'}  {r.status}{who}{verdict}")


@alerts.command("ack")
def acknowledge_alert(
    alert_id: str = typer.Argument(..., help="an id from `smoke alerts ls`"),
    by: str = typer.Option(..., help="who acknowledges"),
) -> None:
    """Acknowledge an alert or trouble signal: someone is on it."""
    from smoke_platform.core.verdicts import acknowledge
    from streaming.verdicts import lifecycles, publish

    settings = _settings()
    rec = acknowledge(lifecycles(settings), alert_id, by)
    publish(settings, rec)
    typer.echo(f"{rec.alert_id}: acknowledged by {rec.acknowledged_by} at {rec.acknowledged_at}")


@alerts.command("resolve")
def resolve_alert(
    alert_id: str = typer.Argument(..., help="an id from `smoke alerts ls`"),
    verdict: str = typer.Option(..., help="fire, false_alarm, test or unknown"),
    by: str = typer.Option(..., help="who resolves"),
    note: str = typer.Option("", help="what happened"),
) -> None:
    """Resolve an alert or trouble signal with a verdict."""
    from smoke_platform.core.verdicts import resolve
    from streaming.verdicts import lifecycles, publish

    settings = _settings()
    rec = resolve(lifecycles(settings), alert_id, verdict, by, note)
    publish(settings, rec)
    typer.echo(f"{rec.alert_id}: resolved as {rec.verdict} by {rec.resolved_by}")
