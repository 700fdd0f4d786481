"""The container suite's section of RELIABILITY.md, from the figures its tests measured."""

from __future__ import annotations

from typing import Any

TARGETS = {
    "revocation_after_kills_s": (1.0, "revocation after each service container was killed and restarted"),
    "reading_after_unpause_s": (5.0, "speech reading again after the paused vault resumed"),
    "revocation_heard_after_vault_link_s": (
        5.0,
        "a revocation made while speech was cut off the vault, refused as such after the link returned",
    ),
    "reading_after_access_restored_s": (1.0, "speech reading again once that access was restored"),
    "vault_serving_after_identity_link_s": (5.0, "key vault serving again after its link to identity returned"),
    "reading_after_identity_link_s": (5.0, "speech reading again after the vault's link to identity returned"),
}


def complete(figures: dict[str, Any]) -> bool:
    """Whether a run measured everything the section reports."""
    wanted = {"prepare_s", "up_v2_s", "up_v1_s", "up_replicas_s", "probe_cpu_s", "faults"}
    faults = figures.get("faults", {})
    return wanted <= set(figures) and set(TARGETS) <= set(faults) and {"down_s", "pause_refusals"} <= set(faults)


def _s(value: Any) -> str:
    return f"{value:.2f} s" if isinstance(value, int | float) else str(value)


def render(figures: dict[str, Any]) -> str:
    lines = [
        "## In containers",
        "",
        f"Written by `python3 dev.py containers` on {figures['written']}; the figures are that run's, "
        "measured on this machine: podman 4.3 (runc, cgroupfs) behind its Docker-compatible socket, "
        "compose.yaml brought up with Compose v2 (2.40) and with docker-compose 1.29.",
        "",
    ]
    if figures.get("standins"):
        lines += [f"Base images built here as stand-ins from Debian's packages (Docker Hub cannot be reached): "
                  f"{', '.join(figures['standins'])}.", ""]  # fmt: skip
    rows = [
        ("engine, base images and our image made ready", figures.get("prepare_s")),
        ("compose up (Compose v2), until every service was healthy", figures.get("up_v2_s")),
        ("compose up (docker-compose 1.29)", figures.get("up_v1_s")),
        ("compose up (replicas profile: PostgreSQL and 2 replicas of each service)", figures.get("up_replicas_s")),
    ]
    lines += ["| step | took |", "| --- | --- |"]
    lines += [f"| {what} | {_s(value)} |" for what, value in rows if value is not None]
    lines.append("")
    calls = figures.get("replica_calls", {})
    if calls:
        split = "; ".join(
            f"{'Compose v2' if flavour == 'v2' else 'docker-compose 1.29'}: "
            + ", ".join(f"{name} {round(n)}" for name, n in served.items())
            for flavour, served in sorted(calls.items())
        )
        lines += [f"Replicas profile, calls served per replica while the host made ten enables through speech: "
                  f"{split}.",
                  ""]  # fmt: skip
    walks = figures.get("sdk_walk_s", {})
    if walks:
        took = "; ".join(f"{where} {_s(seconds)}" for where, seconds in walks.items())
        lines += ["Microsoft's Python SDKs from the host, both ways of naming the hosts (the published doors, and "
                  f"Azure's defaults through the published proxy), the witness's walk: {took}.", ""]  # fmt: skip
    faults = figures.get("faults")
    if faults:
        lines += [
            "Faults across containers, under a workload of application writes and key rotations (a ledger keeping "
            "what was acknowledged); each ended with every acknowledged write read back:",
            "",
            "| fault | result |",
            "| --- | --- |",
        ]
        for service, seconds in faults.get("serving_after_kill_s", {}).items():
            lines.append(f"| kill -9 of the {service} container: serving again (restart policy) | {_s(seconds)} |")
        if "pause_refusals" in faults:
            causes = ", ".join(f"{k} {v}" for k, v in sorted(faults["pause_refusals"].items())) or "none"
            lines.append(f"| reads while the vault was paused {faults['pause_s']:g} s | refused: {causes} |")
        if "vault_link_refusals" in faults:
            causes = ", ".join(f"{k} {v}" for k, v in sorted(faults["vault_link_refusals"].items())) or "none"
            lines.append(f"| reads while speech was cut off the vault | refused: {causes} |")
        if "identity_link_failed_closed_s" in faults:
            lines.append(
                f"| vault cut off identity: failing closed after | {_s(faults['identity_link_failed_closed_s'])} |"
            )
        if "vault_link_revocation_refused_s" in faults:
            refused = _s(faults["vault_link_revocation_refused_s"])
            lines.append(
                f"| access revoked in the vault while speech was cut off it: reads refused after | {refused} |"
            )
        if "down_s" in faults:
            lines.append(f"| compose down (volumes kept) | {_s(faults['down_s'])} |")
            lines.append(
                f"| compose up again: every service serving, everything still there | {_s(faults['up_again_s'])} |"
            )
        lines += [f"| acknowledged writes lost | {faults.get('lost', '-')} (of {faults.get('acknowledged', '-')}) |",
                  ""]  # fmt: skip
        lines += ["| promise | this run | target | met |", "| --- | --- | --- | --- |"]
        for name, (target, what) in TARGETS.items():
            if name in faults:
                lines.append(f"| {what} | {_s(faults[name])} | {target:g} s | "
                             f"{'yes' if faults[name] <= target else 'no'} |")  # fmt: skip
        lines.append("")
    probe = figures.get("probe_cpu_s")
    if probe:
        median, most, cli = (round(probe[k] * 1000) for k in ("median", "max", "cli_median"))
        lines += [f"The health probe compose runs every 5 s took {median} ms of CPU (median of 10, max {most} ms; "
                  f"target under 100 ms), against {cli} ms for `cmk health`.", ""]  # fmt: skip
    return "\n".join(lines)
