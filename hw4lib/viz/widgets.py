"""The interactive pictures (ipywidgets): stage 2's mask sliders and stage 7's generator.

Each displays itself and returns None (returning the widget would show it a second time). They need a live kernel
with ipywidgets; ``tests/test_browser.py`` drives them in JupyterLab in a headless browser.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn

from hw4lib.errors import HW4Error
from hw4lib.prompting import Continuation, continue_prompt
from hw4lib.viz.dropout import mask_figure
from hw4lib.viz.sampling import sampling_distribution_plot


def dropout_widget(LockedDropout: type | None = None, p: float = 0.5, seed: int = 0) -> None:
    """Sliders for p and the seed; redraws the masks (with the student's class when given) on every change.

    Displays the widget itself and returns None (returning it would show it a second time).
    """
    import ipywidgets as widgets
    from IPython.display import display

    p_slider = widgets.FloatSlider(value=p, min=0.05, max=0.9, step=0.05, description="p", continuous_update=False)
    seed_slider = widgets.IntSlider(value=seed, min=0, max=20, description="seed", continuous_update=False)
    out = widgets.Output()

    def draw(_: Any = None) -> None:
        with out:
            out.clear_output(wait=True)
            mask_figure(p_slider.value, seed_slider.value, LockedDropout)
            plt.show()

    p_slider.observe(draw, names="value")
    seed_slider.observe(draw, names="value")
    box = widgets.VBox([widgets.HBox([p_slider, seed_slider]), out])
    display(box)
    draw()


def continuation_html(result: Continuation) -> str:
    """The prompt (unknown words struck through and shown as <unk>), the continuation in bold, and the note
    naming the unknown words."""
    unknown = set(result.prompt.unknown)
    prompt = " ".join(
        f"<span style='background:#fde9c8' title='not in the vocabulary'><s>{html.escape(w)}</s> &lt;unk&gt;</span>"
        if w in unknown else html.escape(w) for w in result.prompt.words
    )
    parts = [f"<p class='hw4-continuation'>{prompt} <b>{html.escape(result.text)}</b></p>"]
    if result.unknown_note:
        parts.append(f"<p class='hw4-unknown-note' style='color:#9a5b00'>{html.escape(result.unknown_note)}</p>")
    return "".join(parts)


def generator_widget(
    model: nn.Module,
    vocab: np.ndarray,
    generation: Callable[..., torch.Tensor],
    prediction: Callable[..., torch.Tensor] | None = None,
    *,
    prompt: str = "The game was",
    seed: int = 0,
) -> None:
    """A prompt box, sliders for temperature, top-k (0 = off) and length, a greedy box and a Generate button;
    the continuation comes from your ``generation`` through :func:`hw4lib.prompting.continue_prompt` (a fresh
    generator seeded with the seed box on every press, so the same settings give the same text). With your
    ``prediction``, also the prompt's next-word distribution (top 10) at τ = 1 and the chosen τ.

    Displays the widget itself and returns None (returning it would show it a second time).
    """
    import ipywidgets as widgets
    from IPython.display import HTML, display

    wide, label = widgets.Layout(width="420px"), {"description_width": "100px"}
    text = widgets.Text(value=prompt, description="prompt", placeholder="a few words",
                        layout=widgets.Layout(width="70%"))
    temperature = widgets.FloatSlider(value=1.0, min=0.1, max=2.0, step=0.05, description="temperature τ",
                                      continuous_update=False, layout=wide, style=label)
    top_k = widgets.IntSlider(value=0, min=0, max=100, description="top-k (0 = off)", continuous_update=False,
                              layout=wide, style=label)
    n_words = widgets.IntSlider(value=20, min=1, max=60, description="words", continuous_update=False, layout=wide,
                                style=label)
    greedy = widgets.Checkbox(value=False, description="greedy (arg-max: ignores τ and top-k)", indent=False)
    seed_box = widgets.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed",
                                      layout=widgets.Layout(width="160px"))
    button = widgets.Button(description="Generate", button_style="primary", icon="play")
    out = widgets.Output()

    def generate(_: Any = None) -> None:
        with out:
            out.clear_output(wait=True)
            try:
                result = continue_prompt(model, vocab, generation, text.value, n_words.value, greedy=greedy.value,
                                         temperature=temperature.value, top_k=top_k.value or None,
                                         seed=seed_box.value)
            except NotImplementedError:
                print("(generation: the continuation appears once your generation is implemented)")
                return
            except HW4Error as err:
                print(err)
                return
            except Exception as err:  # the student's error in words, not a traceback inside the widget
                print(f"your generation raised {type(err).__name__}: {err}")
                return
            display(HTML(continuation_html(result)))
            if prediction is None:
                return
            try:
                ids = torch.tensor(result.prompt.ids, dtype=torch.long).view(-1, 1)
                logits = prediction(model, ids.to(next(model.parameters()).device))[0]
            except NotImplementedError:
                print("(prediction: the next-word distribution appears once your prediction is implemented)")
                return
            except Exception as err:  # same: in words
                print(f"your prediction raised {type(err).__name__}: {err}")
                return
            temps = (1.0,) if greedy.value or temperature.value == 1.0 else (1.0, temperature.value)
            fig = sampling_distribution_plot(logits.cpu(), vocab, temperatures=temps,
                                             top_k=None if greedy.value else top_k.value or None, shown=10,
                                             show=False)
            # displayed as an image into `out` by hand: plt.show() from a button's callback left the chart out
            # now and then (seen in CI), as it depends on pyplot's figure registry at that moment
            display(fig)
            plt.close(fig)

    def sync(_: Any = None) -> None:
        temperature.disabled = top_k.disabled = greedy.value

    greedy.observe(sync, names="value")
    button.on_click(generate)
    controls = widgets.VBox([
        text,
        widgets.HBox([widgets.VBox([temperature, top_k, n_words]), widgets.VBox([greedy, seed_box, button])]),
    ])
    display(widgets.VBox([controls, out]))
    generate()
