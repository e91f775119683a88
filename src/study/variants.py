"""The models the analyses compare, each the study's recipe with a few settings changed: the seed,
the budget, the towers and their fusion, generators left out, and for a model trained after a
pseudo-label round, the rule that selects its pseudo-labels. A variant's name says all of that, so a
training two analyses ask for is one model (the ablation's fused model is the baselines' dual
encoder), and a variant that is the study's own 'before' or 'after' model is that model. Each is
trained on its own (`python -m study.train ... --out`, the engine's jobs); the analyses load them."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

# Light on purpose: the engine reads this module when it builds its graph, before any job; torch
# and transformers load only when a model does (load).
from helpers.config import PSEUDO_RULES, Config
from helpers.labels import AI_CLASSES
from study.identity import check_trained, training_identity

# The pseudo-label rules notebook 13 retrains with (the paper's and the class quota; the group check
# is compared on its selections only, to keep the demo's budget).
RETRAINED = tuple(PSEUDO_RULES)[:2]


@dataclass(frozen=True)
class Variant:
    """One training: `pseudo` None trains on train and validation (less `held_out` generators);
    (balance, group_check) first trains that model, then retrains with the pseudo-labels its
    predictions pass under that rule."""

    seed: int
    epochs: int
    modality: str = "both"
    fusion: str = "concat"
    held_out: tuple[int, ...] = ()
    pseudo: tuple[str, bool] | None = None

    @property
    def stage(self) -> str:
        return "before" if self.pseudo is None else "after"

    @property
    def name(self) -> str:
        parts = [f"seed{self.seed}", f"epochs{self.epochs}", self.modality, self.fusion]
        parts += [f"without{'+'.join(map(str, self.held_out))}"] if self.held_out else []
        if self.pseudo is not None:
            balance, group_check = self.pseudo
            parts += ["pseudo", balance.replace("_", "-")] + (["group-check"] if group_check else [])
        return "_".join(parts)

    def base(self) -> Variant:
        """The model whose predictions pick this one's pseudo-labels (itself when it has none)."""
        return dataclasses.replace(self, pseudo=None)

    def changes(self) -> dict:
        """The profile keys this training sets (config() adds the study's draw of the data)."""
        values = {
            "seed": self.seed,
            "epochs": self.epochs,
            "modality": self.modality,
            "fusion": self.fusion,
            "held_out_classes": list(self.held_out),
        }
        if self.pseudo is not None:
            values.update(pseudo_balance=self.pseudo[0], pseudo_group_check=self.pseudo[1])
        return values


def changes(cfg: Config, variant: Variant) -> dict:
    """The profile keys that make the study's profile this variant's: its own, and the study's draw
    of the data when the variant trains from another seed (every model sees the same data)."""
    draw = {"data_seed": cfg.draw_seed} if variant.seed != cfg.draw_seed or cfg.data_seed is not None else {}
    return {**variant.changes(), **draw}


def config(cfg: Config, variant: Variant) -> Config:
    return dataclasses.replace(cfg, **changes(cfg, variant))


def budget(cfg: Config) -> int:
    """The analyses' epochs (analysis_epochs; 0: the study's)."""
    return cfg.analysis_epochs or cfg.epochs


def own(cfg: Config, stage: str) -> Variant:
    """The study's own model of a stage, as a variant."""
    pseudo = (cfg.pseudo_balance, cfg.pseudo_group_check) if stage == "after" else None
    return Variant(cfg.seed, cfg.epochs, cfg.modality, cfg.fusion, tuple(cfg.held_out_classes), pseudo)


def folder(cfg: Config, variant: Variant) -> Path:
    """Where the variant's model is saved: the study's own model folder when it is that model, else
    runs/<profile>/models/<name>."""
    stages = ("before", "after") if cfg.unlabelled_split else ("before",)
    for stage in stages:
        if variant == own(cfg, stage):
            return cfg.run_dir / f"model_{stage}"  # study.setup.model_dir, which imports the data stack
    return cfg.run_dir / "models" / variant.name


def ablation(cfg: Config) -> dict[str, Variant]:
    """Notebook 07's four models: text only, image only, both concatenated, both with attention."""
    seed, epochs = cfg.seed, budget(cfg)
    return {
        "text": Variant(seed, epochs, "text"),
        "image": Variant(seed, epochs, "image"),
        "both": Variant(seed, epochs),
        "both, attention fusion": Variant(seed, epochs, fusion="attention"),
    }


def unseen(cfg: Config) -> dict[int, Variant]:
    """Notebook 08's models: one per generator, trained without it."""
    return {generator: Variant(cfg.seed, budget(cfg), held_out=(generator,)) for generator in AI_CLASSES}


def seeds(cfg: Config) -> dict[int, dict[str, Variant]]:
    """Notebook 10's models: the recipe from each seed, with the study's budget and pseudo-label
    rule: 'before' and, when the profile has a pool, 'after' (the profile's own seed: the study's)."""
    found = {}
    for seed in cfg.seeds:
        before = dataclasses.replace(own(cfg, "before"), seed=seed)
        found[seed] = {"before": before}
        if cfg.unlabelled_split:
            found[seed]["after"] = dataclasses.replace(own(cfg, "after"), seed=seed)
    return found


def fusions(cfg: Config) -> dict[str, dict[int, Variant]]:
    """Notebook 13's fusion rows: per seed, a concat and an attention model with the analyses' budget."""
    return {
        fusion: {seed: Variant(seed, budget(cfg), fusion=fusion) for seed in cfg.seeds}
        for fusion in ("concat", "attention")
    }


def retrained(cfg: Config) -> dict[str, Variant]:
    """Notebook 13's pseudo-label rows (when the profile has a pool), by rule (RETRAINED): the
    profile's seed with the analyses' budget, retrained with the paper's rule and the class quota."""
    if not cfg.unlabelled_split:
        return {}
    return {name: Variant(cfg.seed, budget(cfg), pseudo=PSEUDO_RULES[name]) for name in RETRAINED}


def baselines(cfg: Config) -> dict[str, Variant]:
    """Notebook 12's trained models: the dual encoder and image-only, with the analyses' budget."""
    return {"dual": Variant(cfg.seed, budget(cfg)), "image": Variant(cfg.seed, budget(cfg), "image")}


def of_analysis(cfg: Config, name: str) -> list[Variant]:
    """The variants an analysis reads (none for those that train nothing)."""
    nested = {
        "ablation": lambda: [ablation(cfg)],
        "unseen": lambda: [unseen(cfg)],
        "seeds": lambda: list(seeds(cfg).values()),
        "beyond": lambda: [*fusions(cfg).values(), retrained(cfg)],
        "baselines": lambda: [baselines(cfg)],
    }.get(name, list)()
    return [variant for by_key in nested for variant in by_key.values()]


def to_train(cfg: Config, analyses=None) -> dict[str, Variant]:
    """By name, the variants the analyses (default: the profile's) need trained apart from the
    study's own models, with the models their pseudo-label rounds start from."""
    needed = {}
    for name in cfg.analyses if analyses is None else analyses:
        for variant in of_analysis(cfg, name):
            for one in (variant.base(), variant):
                if folder(cfg, one) == cfg.run_dir / "models" / one.name:
                    needed[one.name] = one
    return needed


def load(cfg: Config, variant: Variant):
    """The variant's saved model, checked to have been trained with this run's settings and code."""
    path = check_trained(
        folder(cfg, variant),
        training_identity(config(cfg, variant), variant.stage),
        "the study trains it (snakemake -s workflow/Snakefile, or make demo), or: python -m study.train PROFILE "
        f"--stage {variant.stage} --out {folder(cfg, variant)} "
        + (f"--before {folder(cfg, variant.base())} " if variant.pseudo else "")
        + " ".join(f"--set {k}={json.dumps(v)}" for k, v in changes(cfg, variant).items()),
    )
    from helpers.inference.cached import pick_device
    from helpers.modeling.checkpoints import load_detector

    return load_detector(path, pick_device())[0]
