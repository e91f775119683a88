"""The sentences of the notebooks that depend on a setting, written from the profile: what the
towers are, what happens to an unreadable image, how the best epoch is chosen, how Task B is
decoded, how pseudo-labels are chosen and split, and what the pool is."""
from __future__ import annotations


def towers(cfg, image_size: int) -> str:
    frozen = " (frozen: its output is computed once per caption and reused every epoch)" if cfg.freeze_text else ""
    return (f"Text tower: `{cfg.text_encoder}` ({cfg.text_init} weights, {cfg.text_pooling} pooling){frozen}; "
            f"vision tower: `{cfg.vision_encoder}` ({cfg.vision_init} weights), images at {image_size} px.")


def unreadable_images(cfg) -> str:
    return {"skip": "An image that cannot be read is listed with its reason and left out of training and metrics "
                    "(never replaced by a blank image); the prediction files still have a row for it.",
            "error": "An image that cannot be read stops the run, naming the row (`bad_images: error`).",
            "zero": "An image that cannot be read is listed and given the all-zero model input, as the authors' code "
                    "does (`bad_images: zero`); it is trained on and scored."}[cfg.bad_images]


def best_epoch(cfg) -> str:
    names = {"f1_a": "the binary F1 of the AI class (Task A)", "f1_a_weighted": "the weighted F1 of Task A",
             "acc_a": "Task-A accuracy", "f1_b_weighted": "the weighted F1 of Task B", "acc_b": "Task-B accuracy"}
    return (f"Every epoch is evaluated on validation and the epoch with the best {names[cfg.metric_for_best]} "
            f"(`metric_for_best: {cfg.metric_for_best}`) is kept: lr {cfg.learning_rate:g}, weight decay "
            f"{cfg.weight_decay:g}, global batch {cfg.batch_size}, {cfg.epochs} epochs.")


def captions(cfg) -> str:
    if cfg.caption_template == "{}":
        return "Captions go to the text tower as they are."
    return (f"Captions go to the text tower as `{cfg.caption_template}` on {', '.join(cfg.template_splits)} "
            "and as they are elsewhere.")


def decoding(cfg) -> str:
    if cfg.task_b_decoding == "caption_groups":
        return ("Task B is decoded by caption group (`task_b_decoding: caption_groups`, past the paper): the six images "
                "of a complete group are assigned to the six classes at once, Task A following from the class; other "
                "images are decoded hierarchically. This uses the set's one-image-per-class structure, which images "
                "in the wild do not have.")
    if cfg.task_b_decoding == "six_class":
        return ("Task A is P(AI) > 0.5; Task B is the argmax over all six classes, set to real where Task A says real "
                "(`task_b_decoding: six_class`, the authors' test files).")
    return ("Task A is P(AI) ≥ 0.5; Task B is hierarchical: real whenever Task A says real, else the most likely of the "
            "five AI classes (`task_b_decoding: hierarchical`).")


def pseudo_labels(cfg) -> str:
    confidence = ("Task B's confidence is the top softmax probability over all six classes and its label that argmax "
                  "(`pseudo_confidence: six_class`, the authors' code)" if cfg.pseudo_confidence == "six_class" else
                  "Task B's confidence on a row predicted AI is the best AI class's probability among the five AI "
                  "classes, and Task A's on a row predicted real (`pseudo_confidence: hierarchical`)")
    split = ("by row, as `train_test_split(test_size=0.2)` in the authors' code (`pseudo_split: rows`: a caption's "
             "images can land on both sides)" if cfg.pseudo_split == "rows" else
             "by caption, a caption's images on one side (`pseudo_split: captions`)")
    pool = f"`{cfg.unlabelled_dataset or cfg.dataset}` (split `{cfg.unlabelled_split}`)"
    overlap = ("Pool rows whose caption or image is also in a scored split are kept and counted (`pool_overlap: keep`, "
               "the authors' transductive setup: they pseudo-label the test images they submit)"
               if cfg.pool_overlap == "keep" else
               "Pool rows whose caption or image is also in a scored split are left out and counted (`pool_overlap: drop`)")
    return (f"The 'before' model predicts the unlabelled pool {pool}. Rows where both heads are at least "
            f"{cfg.pseudo_threshold:g} confident keep their predicted labels; {confidence}. They are split "
            f"{cfg.pseudo_train_fraction:.0%} to train, the rest to validation, {split}. {overlap}; pool images also in "
            "train are always left out. A fresh model from the pretrained encoders is then trained on the result.")
