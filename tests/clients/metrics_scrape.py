#!/usr/bin/python3
"""Scrapes a Prometheus endpoint and parses it with Prometheus' own text-format parser
(prometheus_client); prints one JSON object per sample: name, labels, value, family type.

    metrics_scrape.py URL
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main():
    with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
        text = r.read().decode("utf-8")
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            print(json.dumps({"family": family.name, "type": family.type, "name": s.name,
                              "labels": s.labels, "value": s.value}))


if __name__ == "__main__":
    main()
