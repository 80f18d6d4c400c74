/** @module The dashboard page (placeholder). */
export const DASHBOARD_HTML = "<!doctype html><title>metaq</title>";
