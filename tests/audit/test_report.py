"""emgeo.audit.report: one self-contained page from a Jinja2 template, with everything from the
data escaped."""

from __future__ import annotations

from pathlib import Path

from builders import mixed, word_scorer

from emgeo.audit import audit, report
from emgeo.audit.run import REPORT_FILE

RESULT = {
    "n_samples": 3,
    "n_removed": 1,
    "n_rejected": 0,
    "n_cached": 2,
    "threshold": 0.5,
    "seconds": 1.25,
}


def _record(full: float, top: list) -> dict:
    return {"full": full, "membership only": 0.25, "neighbours only": 0.125, "top_latents": top}


def _write(tmp_path: Path, riskiest: list[dict], groups: dict, **kwargs) -> str:
    path = report.write_report(
        tmp_path / "report.html",
        scorer=kwargs.pop("scorer", word_scorer()),
        source=kwargs.pop("source", "data/chats.jsonl"),
        fraction=0.5,
        full_scores=[0.1, 0.5, 0.2],
        keep=[True, False, True],
        riskiest=riskiest,
        groups=groups,
        result={**RESULT, **kwargs},
    )
    return path.read_text(encoding="utf-8")


def test_the_report_says_what_was_used_shows_the_riskiest_and_breaks_down_by_metadata(tmp_path):
    scorer = word_scorer(neuronpedia="gemma-2-2b/20-gemmascope-res-16k")
    audit(mixed(tmp_path), tmp_path / "out", scorer=scorer, progress=False)
    page = (tmp_path / "out" / REPORT_FILE).read_text()
    for words in (
        "word counter",
        "six words",
        "the word hate",
        "cannot say",
        "data:image/png;base64,",
        "<b>40</b> samples",
    ):
        assert words in page
    assert 'href="https://www.neuronpedia.org/gemma-2-2b/20-gemmascope-res-16k/0"' in page
    assert "<th>source</th>" in page and "hate hate you" in page
    assert "<script" not in page and "http://" not in page


def test_text_from_the_data_is_escaped(tmp_path):
    hostile = '<script>alert("x")</script> & more'
    item = {"line": 7, "record": _record(0.5, []), "meta": {}, "user": hostile, "answer": hostile}
    page = _write(tmp_path, [item], {"<b>field</b>": {hostile: [0, 1]}}, source="<img src=x>.jsonl")
    assert "<script" not in page and "<img src=x>" not in page and "<b>field</b>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; more" in page
    assert "<title>emgeo audit: &lt;img src=x&gt;.jsonl</title>" in page


def test_the_riskiest_table_marks_toxic_latents_and_links_only_where_neuronpedia_hosts_them(
    tmp_path,
):
    top = [[0, 1.5, 1.0], [3, 0.25, 0.2]]
    items = [
        {"line": 3, "record": _record(0.5, top), "meta": {}, "user": "u", "answer": "a"},
        {"line": 4, "record": _record(0.25, []), "meta": {}, "user": "u", "answer": "a"},
    ]
    page = _write(tmp_path, items, {})
    assert "0 (toxic): act 1.5, prox 1.00<br>3: act 0.25, prox 0.20" in page
    assert '<span class="muted">none active</span>' in page and "<a href" not in page
    assert "Neuronpedia does not host this SAE" in page
    assert "<h2>The 2 riskiest samples</h2>" in page and "<td class=num>0.500</td>" in page
    linked = _write(tmp_path, items, {}, scorer=word_scorer(neuronpedia="m/s"))
    assert '<a href="https://www.neuronpedia.org/m/s/0">0</a> (toxic)' in linked
    assert "latent numbers link to Neuronpedia (m/s)" in linked


def test_metadata_groups_show_means_and_shares_removed_and_id_like_fields_are_not_broken_down(
    tmp_path,
):
    groups = {"source": {"a": [0, 1], "b": [2]}, "id": {str(i): [0] for i in range(51)}}
    page = _write(tmp_path, [], groups, n_rejected=2)
    row_a = "<tr><td>a</td><td class=num>2</td><td class=num>0.300</td><td class=num>50%</td></tr>"
    assert row_a in page and "<td>b</td><td class=num>1</td><td class=num>0.200</td>" in page
    assert "id: 51 distinct values, not broken down." in page
    assert "2 bad lines set aside (rejected.jsonl)" in page
    assert "full score &ge;\n0.5)" in page and "2 samples\ncame from the cache; 1.2 s" in page
    bare = _write(tmp_path, [], {})
    assert "The samples carry no metadata field besides their messages." in bare
    assert "bad lines set aside" not in bare


def test_every_section_heading_starts_its_line(tmp_path):
    """Notebook 09 lists the report's sections from the lines that start with <h2>."""
    page = _write(tmp_path, [], {})
    sections = [
        line.removeprefix("<h2>").split("</h2>")[0]
        for line in page.splitlines()
        if line.startswith("<h2>")
    ]
    assert sections == [
        "What was used",
        "What the score can and cannot tell",
        "Score distribution",
        "The 0 riskiest samples",
        "By metadata field",
    ]


def test_writing_the_report_leaves_a_notebooks_plotting_backend_alone(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    audit(mixed(tmp_path, 5), tmp_path / "out", scorer=word_scorer(), progress=False)
    assert matplotlib.get_backend() == before
