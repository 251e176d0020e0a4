"""The HTML of the pages: shells that name what they show; `static/app.js` fills them from the
JSON and SVG routes and keeps them up to date. Every value put into a page is escaped here, and
the script sets text, never markup, from what it fetches."""

from __future__ import annotations

import html
import json

HEAD = ("<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        "<title>{title}</title><link rel=icon href='data:,'><link rel=stylesheet href='/static/style.css'></head>")


def _page(title: str, body: str, kind: str, store: str, **attrs) -> str:
    data = "".join(f" data-{k}='{html.escape(json.dumps(v) if not isinstance(v, str) else v, quote=True)}'"
                   for k, v in attrs.items())
    return (HEAD.format(title=html.escape(title)) +
            f"<body data-page={kind}{data}><header><a href='/'>paretolab</a> <span class=note>store "
            f"<code>{html.escape(store)}</code></span> <span id=live class=note></span></header>"
            f"<main>{body}</main><script src='/static/app.js'></script></body></html>")


def sweeps_page(store: str) -> str:
    body = ("<h1>Sweeps</h1><p id=why class=note></p>"
            "<table id=sweeps class=grid><thead><tr><th>compare</th><th>sweep</th><th>progress</th><th>ended</th>"
            "<th>total</th><th>succeeded</th><th>failed</th><th>diverged</th><th>pruned</th><th>running</th>"
            "<th>trials/s</th><th>ETA</th></tr></thead><tbody></tbody></table>"
            "<p><button id=compare disabled>compare the chosen sweeps</button></p>")
    return _page("paretolab: sweeps", body, "sweeps", store)


SECTIONS = """
<section id=status-section><table id=status class=grid><thead><tr><th>sweep</th><th>progress</th><th>ended</th>
<th>total</th><th>succeeded</th><th>failed</th><th>diverged</th><th>pruned</th><th>running</th><th>trials/s</th>
<th>ETA</th></tr></thead><tbody></tbody></table></section>
<p class=note id=criterion></p>
<form id=controls class=controls onsubmit="return false">
<label>phase x <select name=x></select></label> <label>phase y <select name=y></select></label>
<label>frontier x <select name=frontier_x></select></label>
<label>group by <select name=by></select></label>
<label>curves over <select name=curve_x><option>step</option><option>samples</option><option>flops</option></select></label>
<label>metric <select name=metric></select></label>
</form>
<div class=row>
<section><h2>Phase diagram</h2><figure><img class=plot id=fig-phase alt="phase diagram"><figcaption class=why></figcaption><a class="numbers note" data-api=/api/phase target=_blank>the numbers (JSON)</a></figure></section>
<section><h2>Frontier</h2><figure><img class=plot id=fig-frontier alt="frontier"><figcaption class=why></figcaption><a class="numbers note" data-api=/api/frontier target=_blank>the numbers (JSON)</a></figure></section>
</div>
<div class=row>
<section><h2>Learning curves</h2><figure><img class=plot id=fig-curves alt="learning curves"><figcaption class=why></figcaption><a class="numbers note" data-api=/api/curves target=_blank>the numbers (JSON)</a></figure></section>
<section><h2>Transitions</h2><p class=note>per group: curves, and the medians over them of the plateau, the onset (the loss
halfway down its drop), the sharpness (10% to 90% of the accuracy's rise) and the grokking gap, in steps</p>
<div class=scroll><table id=transitions class=grid></table></div><p class="why note" id=transitions-why></p></section>
</div>
<section><h2>Luck</h2><figure><img class=plot id=fig-luck alt="luck"><figcaption class=why></figcaption><a class="numbers note" data-api=/api/luck target=_blank>the numbers (JSON)</a></figure></section>
<section><h2>Cells</h2><div id=filters class=controls></div>
<div class=scroll><table id=cells class=grid></table></div>
<p class=note><span id=cells-count></span> <button id=cells-prev>previous</button> <button id=cells-next>next</button></p></section>
<section><h2>Failed trials</h2><p class=note id=failures-count></p><div class=scroll><table id=failures class=grid></table></div></section>
<section><h2>Spec</h2><div id=spec></div></section>
"""


def sweep_page(store: str, sweeps: list[str]) -> str:
    title = " vs ".join(sweeps)
    return _page(f"paretolab: {title}", f"<h1>{html.escape(title)}</h1><p id=why class=note></p>{SECTIONS}",
                 "sweep", store, sweeps=sweeps)


def trial_page(store: str, trial_id: str) -> str:
    body = (f"<h1>trial {html.escape(trial_id)}</h1><p id=why class=note></p><p id=trial-status></p>"
            "<pre id=trial-error hidden></pre><p id=trial-sweeps class=note></p>"
            "<figure><img class=plot id=fig-trial alt='curves of the trial'><figcaption class=why></figcaption><a class='numbers note' data-api=/api/trial_curve target=_blank>the numbers (JSON)</a></figure>"
            "<h2>Config and result</h2><table id=trial-fields class=grid></table>")
    return _page(f"paretolab: trial {trial_id}", body, "trial", store, trial=trial_id)


def error_page(message: str) -> str:
    return (HEAD.format(title="paretolab: error") + "<body data-page=error><header><a href='/'>paretolab</a></header>"
            f"<main><h1>Cannot show this page</h1><p class=error>{html.escape(message)}</p></main></body></html>")
