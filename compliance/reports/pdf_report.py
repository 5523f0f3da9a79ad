"""The compliance report as a PDF a person reads: cover, scope, summary, one section per
control with its evidence figures and reasons, the access-log checkpoint, the
subprocessors, and how to check the report (the signature block).

Written with ReportLab; why ReportLab and which fonts: ``pdf_common``. Every label on the
page comes from ``labels``: no internal field name is printed. The PDF carries figures
and reasons, not raw evidence, so its size follows the number of controls and checks,
not the evidence's; the raw evidence goes to the evidence ZIP.
"""

from __future__ import annotations

import io
from typing import IO, Any, Final

from reportlab.lib.units import mm
from reportlab.platypus import CondPageBreak, Flowable, KeepTogether, PageBreak, Paragraph, Spacer

from konsil.compliance.reports.csv_workbook import evidence_path
from konsil.compliance.reports.json_report import report_sha256
from konsil.compliance.reports.labels import (
    DATA_CATEGORY_LABELS,
    LOCATION_LABELS,
    METHOD_LABELS,
    STATUS_LABELS,
    TRANSFER_LABELS,
    check_label,
    collector_label,
    date_text,
    day_text,
    figure_label,
    figure_value,
    period_text,
    time_text,
)
from konsil.compliance.reports.model import Finding, ReportDocument
from konsil.compliance.reports.pdf_common import (
    STATUS_COLOURS,
    build,
    content_width,
    grid,
    para,
    styles,
    text,
)
from konsil.compliance.subprocessors.register import Subprocessor

MEDIA_TYPE: Final = "application/pdf"
VERIFY_COMMAND: Final = "python -m konsil.compliance.reports.verify_zip REPORT.zip --keys KEYS.json"

JURISDICTION_LABELS: Final = {"eu_eea": "EU/EEA law (GDPR)", "us": "United States law (HIPAA)"}


def pdf_bytes(doc: ReportDocument) -> bytes:
    buffer = io.BytesIO()
    write_pdf(doc, buffer)
    return buffer.getvalue()


def write_pdf(doc: ReportDocument, out: IO[bytes]) -> None:
    s = styles()
    framework = doc.framework.name
    story: list[Flowable] = []
    story += _cover(doc, s)
    story += _scope(doc, s)
    story += _summary(doc, s)
    story.append(PageBreak())
    story.append(Paragraph("Controls", s["h1"]))
    for finding in doc.findings:
        story += _control(doc, finding, s)
    story.append(CondPageBreak(60 * mm))
    story += _checkpoint(doc, s)
    story += _subprocessors(doc, s)
    story += _signature(doc, s)
    build(
        out,
        story,
        title=f"{framework} compliance report: {doc.org_name}",
        author=f"Konsil region {doc.region}",
        subject=f"{framework}, {period_text(doc.period_start, doc.period_end)}",
        footer=f"{framework} · {period_text(doc.period_start, doc.period_end)} · {doc.org_name}",
    )


def _status(status: str, style: Any) -> Paragraph:
    colour = STATUS_COLOURS[status].hexval()[2:]
    return Paragraph(f'<font color="#{colour}"><b>{text(STATUS_LABELS[status])}</b></font>', style)


def _pairs(rows: list[tuple[str, str]], s: dict[str, Any], label_width: float = 45 * mm) -> Flowable:
    data = [[para(label, s["cell_bold"]), para(value, s["cell"])] for label, value in rows]
    return grid(data, [label_width, content_width() - label_width], header=False)


def _cover(doc: ReportDocument, s: dict[str, Any]) -> list[Flowable]:
    return [
        Spacer(1, 30 * mm),
        para(f"{doc.framework.name} compliance report", s["title"]),
        para(doc.org_name, s["subtitle"]),
        _pairs(
            [
                ("Organisation", doc.org_name),
                ("Organisation id", str(doc.org_id)),
                ("Framework", doc.framework.name),
                ("Period", period_text(doc.period_start, doc.period_end)),
                ("Generated", time_text(doc.generated_at)),
                ("Region", f"{doc.region} ({JURISDICTION_LABELS.get(doc.jurisdiction, doc.jurisdiction)})"),
                ("Report id", str(doc.id)),
            ],
            s,
        ),
        Spacer(1, 10 * mm),
        para(
            "This report states, for each control of the framework, whether the evidence Konsil collected "
            "from the organisation's live data shows that it is met. Figures are counts, ages and settings; "
            "the report holds no personal data. Every figure can be checked against the evidence files "
            "in the signed evidence archive (see “How to check this report” at the end).",
            s["body"],
        ),
        PageBreak(),
    ]


def _scope(doc: ReportDocument, s: dict[str, Any]) -> list[Flowable]:
    automated = sum(1 for f in doc.findings if f.kind == "automated")
    attested = len(doc.findings) - automated
    sources = sorted({collector_label(o.collector) for o in doc.observations})
    return [
        Paragraph("Scope", s["h1"]),
        para(
            f"The organisation {doc.org_name} in Konsil's region {doc.region}, from "
            f"{period_text(doc.period_start, doc.period_end)} (times in UTC). The evidence was collected in that "
            "region from its own database and key service only.",
            s["body"],
        ),
        Spacer(1, 3 * mm),
        para(
            f"{doc.framework.name} has {len(doc.findings)} controls in Konsil's catalog: {automated} checked "
            f"automatically against live data and {attested} confirmed by a signed statement of the "
            "organisation's owner (an attestation, valid for a set time).",
            s["body"],
        ),
        Spacer(1, 3 * mm),
        para(
            "Evidence sources: " + (", ".join(sources) if sources else "none") + f" ({len(doc.observations)} "
            "evidence records).",
            s["body"],
        ),
        Spacer(1, 6 * mm),
    ]


def _summary(doc: ReportDocument, s: dict[str, Any]) -> list[Flowable]:
    counts = doc.summary
    totals = [
        [para("Result", s["cell_bold"]), para("Controls", s["cell_bold"])],
        [_status("pass", s["cell"]), para(str(counts.passed), s["cell"])],
        [_status("fail", s["cell"]), para(str(counts.failed), s["cell"])],
        [_status("attested", s["cell"]), para(str(counts.attested), s["cell"])],
        [_status("not_attested", s["cell"]), para(str(counts.not_attested), s["cell"])],
        [_status("not_applicable", s["cell"]), para(str(counts.not_applicable), s["cell"])],
        [para("Total", s["cell_bold"]), para(str(counts.total), s["cell_bold"])],
    ]
    width = content_width()
    rows: list[list[Any]] = [[para(h, s["cell_bold"]) for h in ("Control", "Title", "Result")]]
    for finding in doc.findings:
        rows.append(
            [para(finding.control_id, s["cell"]), para(finding.title, s["cell"]), _status(finding.status, s["cell"])]
        )
    return [
        Paragraph("Summary", s["h1"]),
        grid(totals, [50 * mm, 25 * mm]),
        Spacer(1, 6 * mm),
        grid(rows, [35 * mm, width - 65 * mm, 30 * mm], zebra=True),
    ]


def _figures(figures: dict[str, Any], s: dict[str, Any]) -> Flowable | None:
    if not figures:
        return None
    lines = "<br/>".join(f"{text(figure_label(k))}: <b>{text(figure_value(v))}</b>" for k, v in figures.items())
    return Paragraph(lines, s["cell"])


def _control(doc: ReportDocument, finding: Finding, s: dict[str, Any]) -> list[Flowable]:
    width = content_width()
    heading = Paragraph(
        f"{text(doc.framework.name)} {text(finding.control_id)}: {text(finding.title)}",
        s["h2"],
    )
    how = "How it is checked" if finding.kind == "automated" else "What the owner signs"
    facts = _pairs(
        [
            ("What it asks", finding.requirement),
            (how, finding.rule),
            ("Promises", ", ".join(finding.promises)),
        ],
        s,
        label_width=38 * mm,
    )
    result = grid(
        [
            [para("Result", s["cell_bold"]), _status(finding.status, s["cell"])],
            [para("Why", s["cell_bold"]), para(finding.reason, s["cell"])],
        ],
        [38 * mm, width - 38 * mm],
        header=False,
    )
    block: list[Flowable] = [heading, result, Spacer(1, 2 * mm), facts]
    if finding.checks:
        rows: list[list[Any]] = [[para(h, s["cell_bold"]) for h in ("Check", "Result", "What was found", "Figures")]]
        for ref in finding.checks:
            rows.append(
                [
                    para(check_label(ref.name), s["cell"]),
                    _status(ref.result, s["cell"]),
                    para(ref.reason, s["cell"]),
                    _figures(ref.figures, s) or para("\u2013", s["cell"]),
                ]
            )
        block += [Spacer(1, 2 * mm), grid(rows, [40 * mm, 22 * mm, width - 112 * mm, 50 * mm])]
        observation = doc.observation(finding.checks[0].observation_id)
        block.append(Spacer(1, 1.5 * mm))
        block.append(
            para(
                f"Evidence: {collector_label(observation.collector)}, "
                f"{METHOD_LABELS.get(observation.method, observation.method)}, collected "
                f"{time_text(observation.collected_at)}. {observation.description} "
                f"File {evidence_path(observation.id)} in the evidence archive, "
                f"SHA-256 {observation.evidence_sha256}.",
                s["hash"],
            )
        )
    elif finding.attestation is not None:
        a = finding.attestation
        block += [
            Spacer(1, 2 * mm),
            para(
                f"Signed statement: “{a.statement}” Signed by {a.signed_by} on {time_text(a.signed_at)}; "
                f"valid until {date_text(a.expires_at)}.",
                s["small"],
            ),
        ]
    block.append(Spacer(1, 5 * mm))
    # Keep a short control on one page; a long one may break, its heading not alone.
    return [KeepTogether(block[:2]), *block[2:]] if len(finding.checks) > 3 else [KeepTogether(block)]


def _checkpoint(doc: ReportDocument, s: dict[str, Any]) -> list[Flowable]:
    c = doc.checkpoint
    return [
        Paragraph("Access log checkpoint", s["h1"]),
        para(
            "The region signed this checkpoint of the organisation's access log for this report. Keep it: "
            "a later verification against it proves that no entry up to this point has been changed, "
            "removed or added since.",
            s["body"],
        ),
        Spacer(1, 2 * mm),
        _pairs(
            [
                ("Entries up to number", figure_value(c.seq)),
                ("Hash of that entry", c.head_hash),
                ("Signed with key", c.kid),
                ("Made", time_text(c.made_at)),
            ],
            s,
        ),
        Spacer(1, 6 * mm),
    ]


def _agreement(p: Subprocessor, jurisdiction: str) -> str:
    parts = []
    if p.dpa_signed:
        parts.append("processing agreement signed" + (f" on {day_text(p.dpa_signed_on)}" if p.dpa_signed_on else ""))
    else:
        parts.append("no processing agreement")
    if jurisdiction == "us":
        parts.append("business associate agreement" if p.baa else "no business associate agreement")
    return "; ".join(parts)


def _subprocessors(doc: ReportDocument, s: dict[str, Any]) -> list[Flowable]:
    width = content_width()
    rows: list[list[Any]] = [
        [para(h, s["cell_bold"]) for h in ("Subprocessor", "Purpose", "Data", "Where", "Transfer basis", "Agreements")]
    ]
    for p in doc.subprocessors:
        rows.append(
            [
                para(p.name, s["cell_bold"]),
                para(p.purpose, s["cell"]),
                para(", ".join(DATA_CATEGORY_LABELS.get(c, c) for c in p.data_categories), s["cell"]),
                para(LOCATION_LABELS.get(p.location, p.location), s["cell"]),
                para(TRANSFER_LABELS.get(p.transfer_mechanism, p.transfer_mechanism), s["cell"]),
                para(_agreement(p, doc.jurisdiction), s["cell"]),
            ]
        )
    return [
        Paragraph("Subprocessors", s["h1"]),
        para(f"The processors that receive data of region {doc.region}.", s["body"]),
        Spacer(1, 2 * mm),
        grid(rows, [31 * mm, width - 135 * mm, 28 * mm, 18 * mm, 26 * mm, 32 * mm], zebra=True),
        Spacer(1, 6 * mm),
    ]


def _signature(doc: ReportDocument, s: dict[str, Any]) -> list[Flowable]:
    return [
        CondPageBreak(70 * mm),
        Paragraph("How to check this report", s["h1"]),
        _pairs(
            [
                ("Report SHA-256", report_sha256(doc)),
                ("Signed by", f"region {doc.region}, key {doc.signing.kid}"),
                ("Public keys", doc.signing.key_set_url),
            ],
            s,
        ),
        Spacer(1, 3 * mm),
        para(
            "The report's SHA-256 is that of its JSON document (report.json). The evidence archive (ZIP) "
            "holds that document, this PDF, every evidence file and a manifest with the SHA-256 and size "
            "of each file; the region signed the manifest with the key named above (Ed25519). To check it, "
            "download the region's public keys yourself from the address above, keep that file, and run:",
            s["body"],
        ),
        Spacer(1, 2 * mm),
        para(VERIFY_COMMAND, s["cell_bold"]),
        Spacer(1, 2 * mm),
        para(
            "It confirms that the signature is the region's and that no file in the archive was changed. "
            "Use the keys you fetched, not the copy inside the archive: whoever could change the archive "
            "could also replace that copy.",
            s["body"],
        ),
    ]
