"""The generation widget's logic without a browser: prompt words to ids (unknown words to <unk>), the call to
``generation``, ids back to words, and the same text for the same settings.

The widget in a real browser is ``tests/test_browser.py::test_generator_widget_continues_a_prompt``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hw4lib.components import load_components
from hw4lib.errors import HW4Error
from hw4lib.prompting import Continuation, continue_prompt, encode_prompt
from hw4lib.viz import continuation_html, sentence_ids

VOCAB = np.array(["<unk>", "<eos>", "the", "The", "game", "was", "a", "success", "and"] + [f"w{i}" for i in range(40)])


@pytest.fixture(scope="module")
def C():
    return load_components("solutions")


@pytest.fixture(scope="module")
def model(C):
    """A small reference LanguageModel whose weights come from its own generator (not torch's global one), with
    large enough weights that its next-word distributions are far from uniform."""
    model = C.LanguageModel(len(VOCAB), 12, 16, 2)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.8)
    return model


def test_known_words_get_their_ids_and_unknown_words_unk():
    prompt = encode_prompt("The game zzz was a zzz success Game", VOCAB)
    assert prompt.words == ("The", "game", "zzz", "was", "a", "zzz", "success", "Game")
    assert prompt.ids == (3, 4, 0, 5, 6, 0, 7, 0)
    # each unknown word once, in the order typed; case matters (WikiText-2 keeps it)
    assert prompt.unknown == ("zzz", "Game")


def test_words_may_come_as_a_list_and_whitespace_is_not_a_word():
    assert encode_prompt(["the", "game"], VOCAB).ids == (2, 4)
    assert encode_prompt("  the \t game\n", VOCAB).ids == (2, 4)
    assert encode_prompt("the game", VOCAB).unknown == ()


@pytest.mark.parametrize("empty", ["", "   \n", []])
def test_an_empty_prompt_is_a_clear_error(empty):
    with pytest.raises(HW4Error, match="the prompt is empty"):
        encode_prompt(empty, VOCAB)


def test_unknown_words_without_an_unk_entry_are_named():
    with pytest.raises(HW4Error, match=r"zzz: not in the vocabulary, which has no <unk>"):
        encode_prompt("the zzz", np.array(["the", "game"]))
    assert encode_prompt("the game", np.array(["the", "game"])).ids == (0, 1)


def test_sentence_ids_of_the_dropout_demo_is_the_same_mapping():
    words = "The zzz game".split()
    assert sentence_ids(VOCAB, words).tolist() == [[i] for i in encode_prompt(words, VOCAB).ids]


def test_generation_gets_the_prompt_ids_and_a_generator_seeded_with_seed():
    calls = []

    def spy(model, inputs, n_words, greedy=True, temperature=1.0, top_k=None, generator=None):
        calls.append((inputs.clone(), n_words, greedy, temperature, top_k, generator.initial_seed()))
        return torch.tensor([[4, 5, 0]])

    result = continue_prompt(torch.nn.Linear(1, 1), VOCAB, spy, "the qqq game", 3, greedy=False, temperature=0.7,
                             top_k=5, seed=11)
    (inputs, n_words, greedy, temperature, top_k, seed), = calls
    assert inputs.dtype == torch.long and inputs.tolist() == [[2], [0], [4]]
    assert (n_words, greedy, temperature, top_k, seed) == (3, False, 0.7, 5, 11)
    assert result.ids == (4, 5, 0) and result.words == ("game", "was", "<unk>") and result.text == "game was <unk>"
    assert result.unknown_note == "not in the vocabulary, read as <unk>: 'qqq'"
    assert continue_prompt(torch.nn.Linear(1, 1), VOCAB, spy, "the game", 3).unknown_note is None


def test_same_settings_give_the_same_text_whatever_else_draws(model, C):
    settings = dict(greedy=False, temperature=1.5, top_k=None, seed=3)
    first = continue_prompt(model, VOCAB, C.generation, "The game was", 25, **settings)
    torch.manual_seed(999)
    torch.rand(1000)  # other code drawing from torch's global generator must not change the text
    again = continue_prompt(model, VOCAB, C.generation, "The game was", 25, **settings)
    assert again.ids == first.ids
    other_seeds = {continue_prompt(model, VOCAB, C.generation, "The game was", 25, **{**settings, "seed": s}).ids
                   for s in (4, 5, 6)}
    # 25 draws from a 49-word vocabulary at τ = 1.5: three other seeds all repeating seed 3 would be a fixed seed
    assert other_seeds - {first.ids}


def test_greedy_ignores_the_seed_and_top_k_one_is_greedy(model, C):
    greedy = continue_prompt(model, VOCAB, C.generation, "the game zzz", 10, seed=0)
    assert continue_prompt(model, VOCAB, C.generation, "the game zzz", 10, seed=1).ids == greedy.ids
    top1 = continue_prompt(model, VOCAB, C.generation, "the game zzz", 10, greedy=False, top_k=1, seed=5)
    assert top1.ids == greedy.ids
    assert greedy.prompt.unknown == ("zzz",) and len(greedy.words) == 10


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_words": 0}, "at least one word"),
    ({"greedy": False, "temperature": 0.0}, "must be > 0"),
    ({"top_k": 0}, "from 1 to 49"),
    ({"top_k": 50}, "from 1 to 49"),
])
def test_bad_settings_are_clear_errors(model, C, kwargs, message):
    kwargs = {"n_words": 5, **kwargs}
    with pytest.raises(HW4Error, match=message):
        continue_prompt(model, VOCAB, C.generation, "the game", **kwargs)


@pytest.mark.parametrize(("returned", "message"), [
    (torch.zeros(3, dtype=torch.long), r"returned \(3,\) for one prompt and 3 words; expected \(1, 3\)"),
    ([[1, 2, 3]], "returned list"),
    (torch.tensor([[1, 2, 49]]), "ids outside the vocabulary"),
])
def test_a_wrong_generation_output_is_named(returned, message):
    def wrong(*args, **kwargs):
        return returned

    with pytest.raises(HW4Error, match=message):
        continue_prompt(torch.nn.Linear(1, 1), VOCAB, wrong, "the game", 3)


def test_the_html_shows_unknown_words_the_continuation_and_the_note_escaped():
    prompt = encode_prompt("the <b>zzz</b> game", VOCAB)
    page = continuation_html(Continuation(prompt, (5, 6), ("was", "a")))
    assert "&lt;b&gt;zzz&lt;/b&gt;" in page and "<b>zzz" not in page
    assert "<b>was a</b>" in page
    assert "hw4-unknown-note" in page and "read as &lt;unk&gt;: &#x27;&lt;b&gt;zzz&lt;/b&gt;&#x27;" in page
    assert "hw4-unknown-note" not in continuation_html(Continuation(encode_prompt("the game", VOCAB), (5,), ("was",)))


def test_the_widgets_chart_without_top_k_has_only_the_temperature_panel(monkeypatch):
    import matplotlib.pyplot as plt

    from hw4lib.viz import sampling_distribution_plot

    monkeypatch.setattr(plt, "show", lambda: None)  # keep the figure to inspect it
    logits = torch.linspace(3.0, -3.0, len(VOCAB))
    for top_k, panels in ((None, 1), (5, 2)):
        plt.close("all")
        sampling_distribution_plot(logits, VOCAB, temperatures=(1.0, 1.3), top_k=top_k, shown=10)
        axes = plt.gcf().axes
        assert len(axes) == panels
        heights = [bar.get_height() for bar in axes[0].patches[:10]]
        assert np.allclose(heights, torch.softmax(logits, dim=-1)[:10].numpy())  # τ = 1, the ten likeliest words
        assert [t.get_text() for t in axes[0].get_xticklabels()] == VOCAB[:10].tolist()
    plt.close("all")
