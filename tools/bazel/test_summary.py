"""Prints one closing line for a `bazel test` run: 'bazel: N passed, N failed, N skipped'.

Reads the run's build event protocol file (--build_event_json_file) for the test
targets and their test.xml (pytest's junit XML), and counts test cases. A target
that did not pass but whose XML shows no failed case (a timeout, a crash, a build
error) counts as one failed case.

Usage: test_summary.py BEP_JSON_FILE
"""

import json
import sys
import urllib.parse
import xml.etree.ElementTree as ET


def xml_counts(path):
    """(passed, failed, skipped) of one junit XML file, or None if unreadable."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
    passed = failed = skipped = 0
    for suite in suites:
        tests = int(suite.get("tests", 0))
        bad = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skip = int(suite.get("skipped", 0))
        passed += tests - bad - skip
        failed += bad
        skipped += skip
    return passed, failed, skipped


def main(bep_path):
    xmls, status = {}, {}
    with open(bep_path) as events:
        for line in events:
            event = json.loads(line)
            ident = event.get("id", {})
            if "testResult" in ident:
                label = ident["testResult"]["label"]
                for output in event.get("testResult", {}).get("testActionOutput", []):
                    if output.get("name") == "test.xml" and output.get("uri", "").startswith("file://"):
                        xmls[label] = urllib.parse.unquote(output["uri"][len("file://"):])
            elif "testSummary" in ident:
                status[ident["testSummary"]["label"]] = event.get("testSummary", {}).get("overallStatus", "NO_STATUS")
            elif "targetCompleted" in ident and not event.get("completed", {}).get("success", True):
                status.setdefault(ident["targetCompleted"]["label"], "FAILED_TO_BUILD")
    passed = failed = skipped = 0
    for label in sorted(set(status) | set(xmls)):
        counts = xml_counts(xmls[label]) if label in xmls else None
        p, f, s = counts or (0, 0, 0)
        if status.get(label, "PASSED") != "PASSED" and f == 0:
            f = 1
        passed, failed, skipped = passed + p, failed + f, skipped + s
    print(f"bazel: {passed} passed, {failed} failed, {skipped} skipped")


if __name__ == "__main__":
    main(sys.argv[1])
