"""Admin views: what the curator is doing, for the person running the training job.

`views` computes the numbers behind the admin endpoints (distribution over the bank,
per-step history, run listing); `page` serves the dashboard, a static HTML page whose
vanilla JS draws SVG charts from those endpoints (nothing fetched from a CDN).
"""
