import pytest

from unike_interp.data import ClozeTemplate, SubjectNotFoundError, find_subject, make_template


@pytest.mark.parametrize(
    "prompt, subject, template",
    [
        ("The color of the zib is", "zib", "The color of the {} is"),
        ("The Zib is; zib again", "zib", "The {} is; {} again"),
        ("Is {x} red? {x} is", "{x}", "Is {} red? {} is"),
        ("Braces {} around zib {0}", "zib", "Braces {{}} around {} {{0}}"),
        ("The a+b (c)? is", "a+b (c)?", "The {} is"),
        ("Ça va, ÉCOLE is", "école", "Ça va, {} is"),
        ("The .* is [", ".*", "The {} is ["),
    ],
)
def test_templates(prompt, subject, template):
    assert make_template(prompt, subject) == template
    t = ClozeTemplate.from_prompt(prompt, subject)
    assert t.fill() == prompt  # original spellings restored exactly
    # the format string with the record's own spelling gives the prompt up to subject case
    assert t.format_string.format(*t.matches) == prompt


def test_fill_with_other_subject_and_spans():
    t = ClozeTemplate.from_prompt("{zib} and {ZIB}!", "{zib}")
    filled = t.fill("new {}")
    assert filled == "new {} and new {}!"
    spans = t.subject_spans("new {}")
    assert [filled[a:b] for a, b in spans] == ["new {}", "new {}"]
    assert t.last_subject_span("new {}") == spans[-1]


def test_subject_not_found():
    assert find_subject("nothing here", "zib") == []
    with pytest.raises(SubjectNotFoundError, match="zib"):
        ClozeTemplate.from_prompt("nothing here", "zib")
    with pytest.raises(ValueError):
        find_subject("text", "")
