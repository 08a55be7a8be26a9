"""Admin views: endpoints and the dashboard in a real browser."""
