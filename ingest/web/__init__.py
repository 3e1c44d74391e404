"""Web sources: a documentation site ingested by its URL (``ingest.pipeline.run_web``).

``address`` says which URLs belong to a site; ``robots`` and ``sitemaps`` read what the site
publishes about itself; ``fetch`` makes every request (the one place that touches the
network); ``links`` reads a page's links and canonical address; ``crawl`` decides what to
request and what each answer means; ``extract`` turns a page into its main content, in a parse
worker like any file.
"""
