"""The protection reports, one module per job (the top layer: nothing below imports it):

- ``run_report``: one protection run's rows from its XComs, and the table its task log prints;
- ``fleet_report``: the fleet's rows from the provider's asset events, out of ``FreshnessPolicy`` or not;
- ``html``: the fleet report as a self-contained HTML page, and the folder it is written to.
"""
