"""The page skeleton and its stylesheet: plain CSS, system fonts, no scripts, no network."""

from __future__ import annotations

CSS = """
:root { --ink:#1d2330; --muted:#5b6472; --line:#e3e6eb; --bg:#f6f7f9; --accent:#1f5fa8;
        --warn:#b4470b; --good:#23803a; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       "DejaVu Sans", sans-serif; }
header { background:#16263d; color:#fff; padding:28px 0 22px; }
header .wrap { display:flex; justify-content:space-between; align-items:flex-end; gap:24px;
               flex-wrap:wrap; }
header h1 { margin:0; font-size:26px; font-weight:650; letter-spacing:.2px; }
header .sub { color:#b9c6d8; font-size:13.5px; margin-top:4px; }
header .meta { color:#b9c6d8; font-size:12.5px; text-align:right; }
.wrap { max-width:1080px; margin:0 auto; padding:0 28px; }
nav { background:#fff; border-bottom:1px solid var(--line); position:sticky; top:0; z-index:2; }
nav .wrap { display:flex; flex-wrap:wrap; gap:4px 18px; padding-top:9px; padding-bottom:9px; }
nav a { color:var(--muted); text-decoration:none; font-size:13px; }
nav a:hover { color:var(--accent); }
main { padding:22px 0 40px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:20px 24px;
          margin:0 0 18px; }
section h2 { margin:0 0 10px; font-size:19px; font-weight:650; }
section h3 { margin:18px 0 6px; font-size:15px; font-weight:650; color:#2d3644; }
p { margin:6px 0 10px; }
.summary { border-left:5px solid var(--accent); }
.summary .headline { font-size:19px; line-height:1.4; font-weight:600; margin:2px 0 12px; }
.summary ul { margin:6px 0 0 0; padding-left:20px; }
.summary li { margin:3px 0; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(170px, 1fr)); gap:12px;
         margin:16px 0 4px; }
.card { background:var(--bg); border:1px solid var(--line); border-radius:7px; padding:10px 14px; }
.card .v { font-size:23px; font-weight:650; color:var(--accent); }
.card .k { font-size:12.5px; color:var(--muted); }
figure { margin:12px 0 8px; text-align:center; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:5px; }
figcaption { color:var(--muted); font-size:13px; margin-top:5px; text-align:left; }
.row { display:flex; flex-wrap:wrap; gap:14px; align-items:flex-start; }
.row > figure { flex:1 1 380px; }
table.tbl { border-collapse:collapse; font-size:13px; margin:8px 0 12px; width:auto;
            font-variant-numeric: tabular-nums; }
table.tbl th, table.tbl td { border-bottom:1px solid var(--line); padding:4px 10px;
                             text-align:right; white-space:nowrap; }
table.tbl th { background:var(--bg); font-weight:600; color:#2d3644; }
table.tbl td:first-child, table.tbl th:first-child,
table.tbl td.t, table.tbl th.t { text-align:left; }
table.kv th, table.kv td { text-align:left; }
.side { display:flex; flex-wrap:wrap; gap:10px 28px; align-items:flex-start; }
.side > figure { flex:1 1 420px; margin-top:0; }
.scroll { overflow-x:auto; }
.note { color:var(--muted); font-size:13.5px; background:var(--bg); border-radius:6px;
        padding:8px 12px; }
.missing { color:var(--warn); }
.tag { display:inline-block; font-size:11.5px; padding:1px 7px; border-radius:10px;
       background:#e8eef7; color:var(--accent); margin-left:4px; }
.good { color:var(--good); font-weight:600; }
.bad { color:var(--warn); font-weight:600; }
code { background:#eef0f3; padding:1px 5px; border-radius:4px; font-size:12.5px; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:0 0 30px; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header><div class="wrap">
  <div><h1>{title}</h1><div class="sub">{subtitle}</div></div>
  <div class="meta">{meta}</div>
</div></header>
<nav><div class="wrap">{nav}</div></nav>
<main><div class="wrap">
{sections}
</div></main>
<footer>{footer}</footer>
</body>
</html>
"""
