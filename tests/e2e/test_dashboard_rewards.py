"""A reinforcement fine-tuning job's page in the browser (the harness of test_dashboard.py): its
charts plot the mean reward (training, and the full validation where measured) and the mean
answer length, where a supervised job's plot loss and accuracy; its checkpoint table shows
rewards, not the null losses. The job is planted with the trainer's own builders
(tests/unit/reward_steps.py), on a server without a worker: nothing here trains."""

from __future__ import annotations

from tests.conftest import Server
from tests.e2e.test_dashboard import Tab, browser, tab  # noqa: F401 - the browser fixtures
from tests.unit import reward_steps

LINE_JS = """([chart, series]) => {
  const line = document.querySelector(`#${chart} polyline[data-series="${series}"]`);
  return line ? line.getAttribute("points").trim().split(/\\s+/).length : 0;
}"""


def test_an_rft_job_page_plots_rewards(server: Server, tab: Tab) -> None:  # noqa: F811
    job = reward_steps.plant_rft(server)
    page = tab.page
    page.goto(f"{server.root}/jobs/{job.job_id}")
    tab.enter_key()
    tab.wait_status("succeeded")
    steps = len(reward_steps.STEPS)
    page.wait_for_function(
        f"() => document.querySelector('#chart-loss').dataset.points === '{steps}'"
    )

    assert page.text_content("#caption-loss") == "Mean reward"
    assert page.text_content("#caption-acc") == "Mean completion tokens"
    assert tab.points("train_mean_reward") == steps
    validated = [d for d in reward_steps.STEPS.values() if d["full_valid_mean_reward"] is not None]
    assert tab.points("full_valid_mean_reward") == len(validated) == 2
    assert page.evaluate(LINE_JS, ["chart-acc", "completion_tokens_mean"]) == steps
    assert tab.points("train_loss") == 0
    # The legend: the last train reward, the last validation reward measured (step 4's).
    legend = " ".join(page.locator("#chart-loss text.legend").all_text_contents())
    assert "training 1.0000" in legend and "full validation 0.7500" in legend
    assert page.text_content("#progress-text") == f"step {steps} / {steps} · 100%"

    page.wait_for_function(
        f"() => document.querySelectorAll('#ckpt-body tr').length === "
        f"{len(reward_steps.CHECKPOINT_STEPS)}"
    )
    assert page.text_content("#ckpt-train") == "Train reward"
    assert page.text_content("#ckpt-valid") == "Valid reward"
    rows = page.evaluate(
        """() => [...document.querySelectorAll('#ckpt-body tr')].map(
             (tr) => [...tr.querySelectorAll('td')].filter((td) => td.offsetParent !== null)
               .map((td) => td.textContent))"""
    )
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("5", "1", "—"),  # fmtNum writes a whole number without decimals
        ("4", "0.7500", "0.7500"),
        ("2", "0.5000", "0.5000"),
    ]
    assert len(rows[0]) == 5  # the accuracy columns are hidden
    tab.shoot("rft-job.png")
    assert tab.errors == [], tab.errors
