"""The render pool: chart images and text snapshots from candles, cached (imports ``stream`` only).

Not built yet: the chart and snapshot endpoints arrive with the render-pool issue.
"""
