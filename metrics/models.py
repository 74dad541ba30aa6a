"""Events from the bot, their rollups, prices and reviews (see the ingestion issue)."""
