"""What differs between two records of the settings that made a result, named: what a refusal to
reuse a checkpoint, a selection or a saved model tells its reader."""


def changed_keys(old: dict, new: dict) -> list[str]:
    """Keys whose values differ between two records, each as 'key: old -> new'."""
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
