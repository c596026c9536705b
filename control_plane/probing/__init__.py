"""Probes, in one home: the results book (``book``), the runner with its schedule
(``runner``) and the CLI table (``table``). The plug-ins, one per kind, live in
``adapters.probes`` and share only the result type (``adapters.probes.result``) with it."""
