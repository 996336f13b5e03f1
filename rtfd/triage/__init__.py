"""Alert triage: an analyst's decisions on alerts, published as LABEL records to ``fraud_labels``.

* :mod:`rtfd.triage.decisions` — verdicts, alert states and the records they become (pure);
* :mod:`rtfd.triage.publish` — the producer that writes them and waits for the broker's ack;
* :mod:`rtfd.triage.case` — what a case shows, read from the lake through the query service;
* :mod:`rtfd.triage.commands` — ``rtfd label TRANSACTION_ID fraud|legit``.

Imports neither textual nor pyspark; the console's case screen is :mod:`rtfd.tui.case`.
"""
