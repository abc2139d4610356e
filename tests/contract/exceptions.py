"""The contract's exceptions, each with the Adobe documentation that justifies it: paths no spec holds
(:data:`ALLOWED`), places where a spec contradicts Adobe's documentation (:data:`SPEC_ERRATA`), and
deviations of code outside this contract's fix room, owned by another file (:data:`KNOWN_DEVIATIONS`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.contract.specs import spec_line

if TYPE_CHECKING:
    from tests.contract.conformance import Finding

#: Path prefixes outside Adobe's specs, and the page documenting each.
ALLOWED = {
    "/ims/token/v3": "https://developer.adobe.com/developer-console/docs/guides/authentication/ServerToServerAuthentication/implementation",
    "/data/foundation/connectors/landingzone/credentials": (
        "https://experienceleague.adobe.com/en/docs/experience-platform/destinations/catalog/cloud-storage/data-landing-zone"
    ),
    "/emulator/": "not an AEP path: the emulator's own health and fault-switch endpoints (docs/emulator.md)",
}


#: The operation key of the gateway's injected 429s and 500s: answered before the request body is
#: read, so neither side is validated; AEP answers any call so, as Adobe documents
#: (https://experienceleague.adobe.com/en/docs/experience-platform/landing/troubleshooting#api-status-codes).
INJECTED = "injected fault (429 or 500)"


def injected_fault(response: dict[str, Any]) -> bool:
    """Whether a recorded response is an injected fault (:func:`aep_propensity.emulator.app.injected_fault`)."""
    body = response["body"].get("json") or {}
    if response["status"] == 429:
        return body.get("error_code") == "429001"
    return response["status"] == 500 and "injected by the emulator" in str(body.get("detail", ""))


@dataclass(frozen=True)
class Exception_:
    """Findings excused: an operation, where, a text the message contains, and (optionally) one status."""

    operation: str
    where: str
    contains: str
    note: str
    status: int | None = None

    def covers(self, finding: Finding, status: int) -> bool:
        """Whether this exception excuses ``finding`` of a response with ``status``."""
        return (
            finding.operation == self.operation
            and finding.where == self.where
            and self.contains in finding.message
            and self.status in (None, status)
        )


BATCH_DOC = "https://experienceleague.adobe.com/en/docs/experience-platform/ingestion/batch/api-overview"
FLOW_DELETE_DOC = "https://experienceleague.adobe.com/en/docs/experience-platform/sources/api-tutorials/delete"
DLZ_EXPORT_DOC = "https://experienceleague.adobe.com/en/docs/experience-platform/destinations/api/export-datasets"
ACTIVATE_DOC = "https://experienceleague.adobe.com/en/docs/experience-platform/destinations/api/activate-segments-file-based-destinations"
DESCRIPTORS_DOC = "https://experienceleague.adobe.com/en/docs/experience-platform/xdm/api/descriptors"
SCHEMAS_DOC = "https://experienceleague.adobe.com/en/docs/experience-platform/xdm/api/schemas"
SEGMENTS_DOC = "https://experienceleague.adobe.com/en/docs/experience-platform/segmentation/api/segment-definitions"
FLOWS = "/data/foundation/flowservice"
BATCHES = "/data/foundation/import/batches"
REGISTRY = "/data/foundation/schemaregistry"

#: Where a spec is wrong: the spec's file:line and the Adobe page that contradicts it.
SPEC_ERRATA: tuple[Exception_, ...] = (
    Exception_(
        f"POST {BATCHES}",
        "request",
        "'parquet' is not one of",
        f'{spec_line("batch-ingestion.yaml", "- Parquet")}: enum in title case; {BATCH_DOC} sends "format": "parquet"',
    ),
    Exception_(
        f"POST {BATCHES}",
        "response",
        "'loading' is not one of",
        f"{spec_line('batch-ingestion.yaml', '- stalled')}: no 'loading', a new batch's status in {BATCH_DOC}",
    ),
    Exception_(
        f"POST {BATCHES}/{{batchId}}",
        "response",
        "MissingData: Missing response data",
        f"{spec_line('batch-ingestion.yaml', '  /batches/{batchId}:')}: a Batch body; {BATCH_DOC}: an empty 200",
        status=200,
    ),
    *(
        Exception_(
            f"DELETE {FLOWS}/{collection}/{{id}}",
            "response",
            "Unknown response http status: 204",
            f"{spec_line('destinations.yaml', f'  /{collection}/{{id}}:')}: no 204; {FLOW_DELETE_DOC}: 204 No Content",
            status=204,
        )
        for collection in ("connections", "sourceConnections", "targetConnections", "flows")
    ),
    *(
        Exception_(
            f"POST {FLOWS}/{collection}",
            "request",
            "'10440537-2a7b-4583-ac39-ed38d4b848e8' is not one of",
            f"{spec_line('destinations.yaml', f'  /{collection}:')}: the oneOf omits the Data Landing Zone's "
            f"connection spec 10440537-2a7b-4583-ac39-ed38d4b848e8 of {DLZ_EXPORT_DOC}",
        )
        for collection in ("connections", "targetConnections")
    ),
    Exception_(
        f"POST {FLOWS}/flows",
        "request",
        "'GeneralTransform' is not one of ['General Transform']",
        f"{spec_line('destinations.yaml', '  /flows:')}: the oneOf wants 'General Transform' and scheduleParams; "
        f'{ACTIVATE_DOC} sends "name": "GeneralTransform"',
    ),
    Exception_(
        f"PATCH {FLOWS}/flows/{{id}}",
        "request",
        "valid under more than one oneOf alternative",
        f"{spec_line('destinations.yaml', '- $ref: ' + repr('#/components/schemas/BatchSegmentSelector_V2'))}: "
        "the oneOf's alternatives overlap, so a valid segment selector matches several (the spec contradicts itself)",
    ),
    Exception_(
        "POST /data/core/activation/disflowprovider/adhocrun",
        "request",
        "adhoc.dataset.activation+json; version=1",
        f"{spec_line('ad-hoc-activation.yaml', '  /adhocrun:')}: audiences only; {DLZ_EXPORT_DOC} exports datasets "
        "ad hoc with Accept: application/vnd.adobe.adhoc.dataset.activation+json; version=1",
    ),
    Exception_(
        "POST /data/core/activation/disflowprovider/adhocrun",
        "request",
        "'exportIds' is a required property",
        f"{spec_line('ad-hoc-activation.yaml', '  /adhocrun:')}: no dataset body (flowId, datasets), {DLZ_EXPORT_DOC}",
    ),
    *(
        Exception_(
            f"POST {REGISTRY}/tenant/descriptors",
            where,
            "xdm:sourceVersion: 1 is not of type 'string'",
            f"{spec_line('schema-registry.yaml', 'The latest major version of the `sourceSchema`')}: a string; "
            f'{DESCRIPTORS_DOC} sends "xdm:sourceVersion": 1',
        )
        for where in ("request", "response")
    ),
    Exception_(
        f"PATCH {REGISTRY}/tenant/schemas/{{SCHEMA_ID}}",
        "request",
        "['union'] is not of type 'string'",
        f"{spec_line('schema-registry.yaml', '- op: replace')}: a patch value is a string; {SCHEMAS_DOC} "
        'enables Profile with "value": ["union"] on /meta:immutableTags',
    ),
    *(
        Exception_(
            f"GET {REGISTRY}/{{CONTAINER_ID}}/{kind}",
            "response",
            "_page/next: None",
            f"{spec_line('schema-registry.yaml', '  /tenant/schemas:')}: _page.next not nullable; {SCHEMAS_DOC} "
            'lists end with "next": null',
        )
        for kind in ("schemas", "fieldgroups")
    ),
    *(
        Exception_(
            "GET /data/core/ups/segment/definitions",
            "response",
            f".: '{field_name}' is a required property",
            f"{spec_line('segmentation.yaml', '  /segment/definitions:')}: the list requires a definition's fields at "
            f"its top; {SEGMENTS_DOC}: a list is {{segments, page, link}}",
        )
        for field_name in ("expression", "name", "schema")
    ),
    *(
        Exception_(
            f"GET {FLOWS}/runs",
            "response",
            f"'{status}' is not one of ['Success', 'Processing', 'Waiting', 'Failed']",
            f"{spec_line('destinations.yaml', '- Success')}: title case; the same spec filters runs by metrics."
            f"statusSummary.status==success ({spec_line('destinations.yaml', 'statusSummary.status==success')})",
        )
        for status in ("success", "processing")
    ),
)

#: Deviations excused until they are fixed: each names its owner file.
KNOWN_DEVIATIONS: tuple[Exception_, ...] = ()


def allowed(path: str) -> bool:
    """Whether ``path`` is one of :data:`ALLOWED` (no spec holds it)."""
    return any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in ALLOWED)


def excused(finding: Finding, status: int) -> bool:
    """Whether a spec erratum or a known deviation excuses ``finding``."""
    return any(exception.covers(finding, status) for exception in SPEC_ERRATA + KNOWN_DEVIATIONS)
