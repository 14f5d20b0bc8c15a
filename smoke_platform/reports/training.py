"""The training report: candidates side by side, curves, confusion, importances, latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import precision_recall_curve, roc_curve

from smoke_platform.core.modeling import LABEL, CandidateResult
from smoke_platform.core.outcomes import is_operator
from smoke_platform.reports.markdown import MarkdownReport, pyplot


def candidates_table(candidates: dict[str, CandidateResult]) -> pd.DataFrame:
    rows = {}
    for name, c in candidates.items():
        h, lat = c.holdout, c.holdout["latency"]
        rows[name] = {
            "recall": h["recall"],
            "false_alarm_rate": h["false_alarm_rate"],
            f"recall@FAR<={h['target_far']:g}": h["recall_at_far"],
            "precision": h["precision"],
            "F1": h["f1"],
            "ROC-AUC": h["roc_auc"],
            "PR-AUC": h["pr_auc"],
            "Brier": h["calibration"].get("brier"),
            "median latency s": lat["median_s"],
            "p90 latency s": lat["p90_s"],
            "missed fires": lat["missed_sessions"],
            "accuracy (session holdout)": h["accuracy"],
            "accuracy (random rows, leaky)": c.random_split_accuracy,
            "CV recall": c.cv["recall"],
            "CV FAR": c.cv["false_alarm_rate"],
        }
    return pd.DataFrame(rows).T


def _curves(y: np.ndarray, candidates: dict[str, CandidateResult]) -> Any:
    plt = pyplot()
    fig, (roc_ax, pr_ax, cal_ax) = plt.subplots(1, 3, figsize=(17, 5))
    for name, c in candidates.items():
        fpr, tpr, _ = roc_curve(y, c.holdout_scores)
        roc_ax.plot(fpr, tpr, label=f"{name} (AUC {c.holdout['roc_auc']:.4f})")
        prec, rec, _ = precision_recall_curve(y, c.holdout_scores)
        pr_ax.plot(rec, prec, label=f"{name} (AP {c.holdout['pr_auc']:.4f})")
        cal = c.holdout["calibration"]
        cal_ax.plot(cal["mean_predicted"], cal["fraction_positive"], marker="o", label=name)
    roc_ax.set_xscale("symlog", linthresh=0.01)
    roc_ax.axvline(candidates[next(iter(candidates))].holdout["target_far"], ls=":", c="grey")
    roc_ax.set(title="ROC (holdout sessions)", xlabel="false-alarm rate", ylabel="recall")
    pr_ax.set(title="Precision-recall", xlabel="recall", ylabel="precision")
    cal_ax.plot([0, 1], [0, 1], ls="--", c="grey")
    cal_ax.set(title="Calibration", xlabel="mean predicted", ylabel="fraction fire")
    for ax in (roc_ax, pr_ax, cal_ax):
        ax.legend(fontsize=8)
    return fig


def _confusions(candidates: dict[str, CandidateResult]) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(candidates), figsize=(5 * len(candidates), 4), squeeze=False)
    for ax, (name, c) in zip(axes[0], candidates.items(), strict=True):
        cm = c.holdout["confusion"]
        grid = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
        ax.imshow(grid, cmap="Blues")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, f"{v:,}", ha="center", va="center", fontsize=12)
        ax.set(title=name, xticks=[0, 1], yticks=[0, 1], xlabel="predicted", ylabel="actual")
        ax.set_xticklabels(["no fire", "fire"])
        ax.set_yticklabels(["no fire", "fire"])
    return fig


def _importances(model: CandidateResult, holdout: pd.DataFrame) -> tuple[Any, pd.Series]:
    sample = holdout.sample(min(3_000, len(holdout)), random_state=0)
    result = permutation_importance(
        model.model,
        sample[model.features],
        sample[LABEL],
        n_repeats=3,
        random_state=0,
        scoring="average_precision",
    )
    imp = pd.Series(result.importances_mean, index=model.features).sort_values()
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.barh(imp.index, imp.to_numpy(), color="tab:orange")
    ax.set(title=f"Permutation importance ({model.name}, holdout)", xlabel="drop in PR-AUC")
    return fig, imp


def _latency(candidates: dict[str, CandidateResult]) -> Any:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, c in candidates.items():
        values = [v for v in c.holdout["latency"]["per_session_s"].values() if v is not None]
        ax.hist(values, bins=range(0, 62, 2), alpha=0.5, label=name)
    ax.set(title="Detection latency per fire session (holdout)", xlabel="seconds from fire onset")
    ax.legend()
    return fig


def write_training_report(
    dataset: pd.DataFrame,
    candidates: dict[str, CandidateResult],
    decision: dict[str, Any],
    directory: Path,
    real: dict[str, Any] | None = None,
) -> Path:
    holdout = dataset[dataset["holdout"] & ~is_operator(dataset)]
    y = holdout[LABEL].to_numpy()
    rep = MarkdownReport("Training report: fire detection", directory)
    rep.text(
        f"Session-aware evaluation: {dataset.loc[~dataset['holdout'], 'session_id'].nunique()} "
        f"training sessions ({len(candidates)} candidates, each cross-validated on folds of "
        "whole sessions), "
        f"{holdout['session_id'].nunique()} held-out sessions ({len(holdout):,} readings). "
        "UTC, CNT, row index and session ids are never features. The leaky random-row "
        "accuracy is shown only to make the gap visible."
    )
    rep.heading("Promotion decision")
    verdict = "PROMOTED" if decision["promoted"] else "KEPT the current champion"
    rep.text(
        f"**{verdict}** — champion: `{decision['champion_tag']}`, challenger: "
        f"`{decision['challenger']}`."
    )
    rep.text("\n".join(f"- {r}" for r in decision["reasons"]))
    rep.text(why_challenger(candidates, decision["challenger"], real))
    rep.heading("Candidates on the held-out sessions")
    rep.table(candidates_table(candidates))
    rep.figure(_curves(y, candidates), "curves", "ROC, precision-recall and calibration")
    rep.figure(
        _confusions(candidates), "confusion", "Confusion matrices at the operating threshold"
    )
    fig, _ = _importances(candidates[decision["challenger"]], holdout)
    rep.figure(fig, "importances", "Feature importances of the challenger")
    rep.figure(_latency(candidates), "latency", "Detection latency distribution")
    _operator_section(rep, dataset, candidates, decision)
    if real is not None:
        _real_section(rep, real, candidates, decision)
        _calibration_section(rep, dataset[~is_operator(dataset)], real["source"])
    return rep.write()


def why_challenger(candidates: dict, challenger: str, real: dict[str, Any] | None) -> str:
    """The rule that chose the challenger and each candidate's deciding figure."""
    from smoke_platform.core.modeling import rank_key, real_eligible

    eligible = real_eligible(dict(real["figures"])) if real else set(candidates)
    far = next(iter(candidates.values())).holdout["target_far"]
    ranked = sorted(candidates.values(), key=lambda c: rank_key(c.holdout), reverse=True)
    figures = "; ".join(
        f"`{c.name}` {c.holdout['recall_at_far']:.4f} (F1 {c.holdout['f1']:.4f})"
        + ("" if c.name in eligible else ", not near the best on real readings")
        for c in ranked
    )
    return (
        f"**Why `{challenger}`:** the challenger is the candidate with the highest recall at "
        f"a false-alarm rate <= {far:g} on the held-out sessions (ties: F1), among those "
        f"near the best on real readings. Recall at that rate: {figures}."
    )


def _operator_section(
    rep: MarkdownReport, dataset: pd.DataFrame, candidates: dict, decision: dict[str, Any]
) -> None:
    """The readings operators labelled by resolving alerts, and every model on the held-out
    ones (shown beside the simulated holdout, not a bar of the gate)."""
    ops = dataset[is_operator(dataset)]
    rep.heading("On operator-labelled readings (alerts resolved as fire or false alarm)")
    if ops.empty:
        rep.text(
            "No operator-labelled readings yet: alerts resolved as `fire` or `false_alarm` "
            "(`smoke alerts resolve`, the dashboard) label the readings they cover, and the "
            "next training run learns from them."
        )
        return
    held = ops[ops["holdout"]]
    labels = ops.groupby(LABEL)["session_id"].nunique().to_dict()
    rep.text(
        f"{len(ops):,} readings from {ops['session_id'].nunique()} alerts "
        f"({labels.get(1, 0)} judged fire, {labels.get(0, 0)} false alarm), each alert one "
        f"session, of which {held['session_id'].nunique()} held out ({len(held):,} readings)."
    )
    figures = {name: c.operator for name, c in candidates.items() if c.operator}
    if decision.get("previous_champion_operator"):
        figures["previous champion"] = decision["previous_champion_operator"]
    if figures:
        rep.table(pd.DataFrame(figures).T)
    else:
        rep.text("Too few alerts of each verdict to hold one out: no figures yet.")


def _calibration_section(rep: MarkdownReport, dataset: pd.DataFrame, source: str) -> None:
    """The simulator against the real readings (smoke_platform/core/calibration.py)."""
    from smoke_platform.core.calibration import report_tables
    from smoke_platform.reference import load_reference

    tables = report_tables(dataset, load_reference(source))
    rep.heading("The simulator against real sensors")
    rep.text(
        "Kolmogorov-Smirnov distance (0 = the same distribution, 1 = disjoint) between the "
        "simulated training readings and the real reference readings of the same class, "
        "pooled and per simulated scenario, for each measurement and each rate of rise "
        "(`rise_*`: how a channel moves from second to second). A test fails when a "
        "pooled distance grows beyond its calibrated value, or a real excerpt falls "
        "outside what the simulator produces beyond the known gaps listed below."
    )
    rep.table(tables["ks"])
    if len(tables["gaps"]):
        rep.text("Real excerpts whose median lies outside the simulated 0.5-99.5 % range:")
        rep.table(tables["gaps"], index=False)


def _real_section(
    rep: MarkdownReport, real: dict[str, Any], candidates: dict, decision: dict[str, Any]
) -> None:
    """Every model on real readings (never trained on), beside the simulated holdout."""
    from smoke_platform.reference import Targets, excerpt_table, shortfalls

    figures = {**real["figures"]}
    if decision.get("champion_real"):
        figures["champion"] = decision["champion_real"]
    rep.heading("On real sensor readings (external validation)")
    rep.text(
        f"{next(iter(figures.values()))['rows']:,} labelled real readings from `{real['source']}`"
        " (public Kaggle smoke-detection excerpts unless `SMOKE_REFERENCE_CSV` says "
        "otherwise); no model is fitted on them. Each model at its own threshold; alerts "
        "under the stream worker's alert rule. " + choice_rule_text()
    )
    rows = {}
    for name, f in figures.items():
        holdout = candidates[name].holdout if name in candidates else {}
        rows[name] = {
            "real recall": f["recall"],
            "real FAR": f["false_alarm_rate"],
            "real ROC-AUC": f["roc_auc"],
            "simulated recall": holdout.get("recall", float("nan")),
            "simulated FAR": holdout.get("false_alarm_rate", float("nan")),
            "simulated ROC-AUC": holdout.get("roc_auc", float("nan")),
            "normal excerpts alerted": f["normal_excerpts_alerted"],
            "fire excerpts alerted": f"{f['fire_excerpts_alerted']} of {f['fire_excerpts']}",
        }
    rep.table(pd.DataFrame(rows).T)
    champion = figures.get("champion")
    if champion is not None:
        missed = shortfalls(champion, Targets())
        rep.text(
            f"**Champion `{decision['champion_tag']}` on real readings:** "
            + ("all targets met." if not missed else "misses " + "; ".join(missed) + ".")
        )
        rep.table(excerpt_table(champion))


def choice_rule_text() -> str:
    """How the challenger is chosen and weighed against the champion on real readings,
    from the rule's own constants (`core.modeling`)."""
    from smoke_platform.core.modeling import CHOICE_TOLERANCE, REAL_AUC_TOLERANCE

    t = CHOICE_TOLERANCE
    return (
        "The challenger is the best candidate on the simulated holdout among those near the "
        f"best on these readings in every figure (recall within {t['recall']:g}, false-alarm "
        f"rate within {t['false_alarm_rate']:g}, ROC-AUC within {t['roc_auc']:g}; if none "
        f"is, those within {REAL_AUC_TOLERANCE:g} of the best ROC-AUC), and it is not "
        f"promoted when its ROC-AUC here is more than {REAL_AUC_TOLERANCE:g} below the "
        "champion's."
    )
