"""The deployment report's HTML template (Jinja2, inline CSS: one self-contained file)."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment
from markupsafe import Markup

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
 body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1150px;
        color: #1d2430; padding: 0 1rem; }
 h1 { margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #dde; }
 .muted { color: #667; }
 .verdict { padding: .8rem 1rem; border-radius: 8px; font-weight: 600; margin: 1rem 0; }
 .go { background: #e4f6e8; border: 1px solid #3a9a55; }
 .stop { background: #fdeaea; border: 1px solid #c43c3c; }
 ul.checks { list-style: none; padding-left: 0; } ul.checks li { margin: .3rem 0; }
 .ok::before { content: "✔ "; color: #2d8a4a; font-weight: 700; }
 .fail::before { content: "✘ "; color: #c43c3c; font-weight: 700; }
 .figs { display: flex; flex-wrap: wrap; gap: 1rem; } .figs img { max-width: 100%; }
 table.data { border-collapse: collapse; font-size: 13px; margin: .5rem 0; }
 table.data th, table.data td { padding: .25rem .6rem; border-bottom: 1px solid #e5e7ef;
        text-align: right; }
 table.data th:first-child, table.data td:first-child { text-align: left; }
 .scroll { max-height: 420px; overflow: auto; display: inline-block; }
 .bands { display: flex; gap: .5rem; } .band { padding: .4rem .8rem; border-radius: 6px; }
 .approve { background: #e4f6e8; } .review { background: #fff4d6; } .remove { background: #fdeaea; }
</style></head><body>
<h1>{{ title }}</h1>
<p class="muted">bundle {{ bundle.version or "(unsaved)" }} · {{ data_note }}</p>

<div class="verdict {{ 'go' if verdict else 'stop' }}">
{% if verdict %}All checks pass: the certified policy holds on this data. Whether the review
workload ({{ "%.1f"|format(100 * workload) }}% of uploads) is affordable is the remaining
business decision.
{% else %}Do not deploy as is: at least one check below fails.{% endif %}
</div>
<ul class="checks">
{% for ok, text in checks %}<li class="{{ 'ok' if ok else 'fail' }}">{{ text }}</li>
{% endfor %}</ul>

<h2>Operating policy</h2>
<div class="bands">
 <div class="band approve">approve: score &lt; {{ "%.6g"|format(policy.approve_below) }}</div>
 <div class="band review">review: {{ "%.6g"|format(policy.approve_below) }} ≤ score
 {% if policy.remove_at is not none %}&lt; {{ "%.6g"|format(policy.remove_at) }}{% endif %}</div>
 {% if policy.remove_at is not none %}
 <div class="band remove">remove: score ≥ {{ "%.6g"|format(policy.remove_at) }}</div>{% endif %}
</div>
<p>Target recall {{ policy.target_recall }} with {{ "%.0f"|format(100 * policy.confidence) }}%
confidence{% if policy.target_precision %}; remove-band precision target
{{ policy.target_precision }}{% endif %}. Calibration data: {{ evidence_source or "not recorded" }}.
The guarantee holds for production photos drawn like the calibration positives (a uniform
sample of our own uploads).</p>
<table class="data">{% for k, v in bundle.items() %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>
{% endfor %}</table>

<h2>Results on the evaluation set</h2>
<h3>Decisions by band</h3>{{ confusion }}
<h3>Summary</h3><div class="scroll">{{ summary }}</div>

<h2>Figures</h2>
<div class="figs">{% for fig in figures %}{{ fig }}{% endfor %}</div>
{% if curve %}<h3>Review workload for other recall targets</h3>
<p class="muted">Each row certifies a threshold on the calibration split and applies it to the
evaluation set.</p>{{ curve }}{% endif %}

{% for name, table in groups.items() %}
<h2>By {{ name }}</h2>
<p class="muted">Groups with missed offensive photos first.</p>
<div class="scroll">{{ table }}</div>
{% endfor %}

<h2>Training diagnosis</h2>
{% if diagnosis %}{{ diagnosis }}{% else %}
<p class="muted">No diagnosis available for this bundle.</p>{% endif %}
</body></html>
"""


HTML_KEYS = ("confusion", "summary", "curve", "diagnosis")


def render(**context: Any) -> str:
    """Render the report page. Text is escaped; `figures`, `groups` and `HTML_KEYS` arrive as
    HTML built by the caller (pandas `to_html`, base64 <img>) and are inserted as is."""
    for key in HTML_KEYS:
        context[key] = Markup(context.get(key, ""))
    context["figures"] = [Markup(f) for f in context.get("figures", [])]
    context["groups"] = {k: Markup(v) for k, v in context.get("groups", {}).items()}
    env = Environment(autoescape=True)
    text: str = env.from_string(TEMPLATE).render(**context)
    return text
