"""What a notebook shows: tables, figures and a conclusion generated from the numbers and the
profile, rendered in order (show) so that the HTML reading copy reads as a report."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Result:
    """intro: Markdown written from the profile (what this run does); tables: caption -> DataFrame;
    figures: file name -> matplotlib figure (saved under the report's figures/); conclusion:
    Markdown written from the numbers; numbers: what goes into metrics.json."""
    title: str
    tables: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    conclusion: str = ""
    numbers: dict = field(default_factory=dict)
    intro: str = ""

    def show(self) -> None:
        from IPython.display import Markdown, display

        if self.intro:
            display(Markdown(self.intro))
        for caption, table in self.tables.items():
            display(Markdown(f"**{caption}**"))
            display(table)
        for figure in self.figures.values():
            display(figure)
        if self.conclusion:
            display(Markdown(self.conclusion))


def with_figures(result: Result, folder, figures: dict) -> Result:
    """Save each figure as folder/<name>.png, close it (the notebook shows it once, through
    show) and keep it on the result."""
    import matplotlib.pyplot as plt

    from helpers.study import plots

    for name, figure in figures.items():
        plots.save(figure, folder, name)
        plt.close(figure)
    result.figures.update(figures)
    return result
