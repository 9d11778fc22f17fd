# %% [markdown]
# # Fleet audit: every capture of a folder, one table
#
# The cells of a notebook (`# %%` marks them: open this file in Jupyter with jupytext, or in
# VS Code, or run it as a script). It audits the bundled samples, shows the fleet summary,
# writes the tables as Parquet, queries them with DuckDB and plots the failing rules per
# capture. `pip install -e '.[notebook]'` brings pyarrow, DuckDB and matplotlib.

# %%
import os
from pathlib import Path

import meshpcap

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
SAMPLES = HERE.parent / "samples"
OUT = Path(os.environ.get("MESHPCAP_EXAMPLE_OUT", "fleet-audit-out"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Audit the folder
# One worker per core; each capture runs in a bounded child process. `cache=` makes a second
# run over a growing folder analyse only the new captures.

# %%
batch = meshpcap.analyze_many(SAMPLES, service_tags=SAMPLES / "ServiceTags_Public_SAMPLE.json",
                              cache=OUT / "cache", progress=False)
batch.captures[["capture", "verdict", "packets", "flows", "blocked", "missing", "unexpected", "seconds"]]

# %% [markdown]
# ## The fleet view

# %%
summary = batch.summary()
print(summary)
summary.rules

# %% [markdown]
# ## Parquet, queried with DuckDB

# %%
import duckdb

meshpcap.write_batch(batch, OUT / "audit.parquet")
failing = duckdb.sql(f"""
    SELECT regexp_extract(capture, '[^/]+$') AS capture, rule, count(*) AS findings
    FROM '{OUT / "audit.parquet" / "findings.parquet"}'
    WHERE severity = 'error'
    GROUP BY ALL ORDER BY capture, rule
""").df()
failing

# %% [markdown]
# ## Failing rules per capture

# %%
import matplotlib

if "MPLBACKEND" not in os.environ and not os.environ.get("DISPLAY"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt

table = failing.pivot_table(index="capture", columns="rule", values="findings", aggfunc="sum", fill_value=0)
ax = table.plot.barh(stacked=True, figsize=(8, 4), title="failing rules per capture")
ax.set_xlabel("findings (severity error)")
plt.tight_layout()
plt.savefig(OUT / "failing-rules.png")
