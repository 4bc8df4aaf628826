"""Da Vinci PAS canonicals, X12 codes, and what differs between PAS versions, in one place.

Sources (shared/dtr-pas.md §3): HL7/davinci-pas ``input/fsh/*.fsh`` at tags 2.0.1 and 2.2.1, and
the Inferno PAS test kit's ``cross_suite/pas_constants.rb`` and ``client/response_generator.rb``.
Every extension URL is the full canonical, a sub-extension's too where the IG defines it as an
extension of its own (``extension-reviewActionCode`` inside ``extension-reviewAction``): the
Inferno kit matches that URL exactly.

The X12 306 review-action codes for a decision (A1, A3, A6) are listed here only to be read by
``decision.py``, which produces them from a reviewer's determination and from nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

PAS = "http://hl7.org/fhir/us/davinci-pas"
STRUCTURE = f"{PAS}/StructureDefinition"

# --- profiles -------------------------------------------------------------------------------------
REQUEST_BUNDLE = f"{STRUCTURE}/profile-pas-request-bundle"
RESPONSE_BUNDLE = f"{STRUCTURE}/profile-pas-response-bundle"
INQUIRY_REQUEST_BUNDLE = f"{STRUCTURE}/profile-pas-inquiry-request-bundle"
INQUIRY_RESPONSE_BUNDLE = f"{STRUCTURE}/profile-pas-inquiry-response-bundle"
CLAIM = f"{STRUCTURE}/profile-claim"
CLAIM_UPDATE = f"{STRUCTURE}/profile-claim-update"
CLAIM_INQUIRY = f"{STRUCTURE}/profile-claim-inquiry"
CLAIM_RESPONSE = f"{STRUCTURE}/profile-claimresponse"
CLAIM_INQUIRY_RESPONSE = f"{STRUCTURE}/profile-claiminquiryresponse"
COMMUNICATION_REQUEST = f"{STRUCTURE}/profile-communicationrequest"

# --- extensions -----------------------------------------------------------------------------------
REVIEW_ACTION = f"{STRUCTURE}/extension-reviewAction"
REVIEW_ACTION_CODE = f"{STRUCTURE}/extension-reviewActionCode"  # inside REVIEW_ACTION, full canonical
REVIEW_ACTION_NUMBER = "number"                                  # inside REVIEW_ACTION, a local name
LEVEL_OF_SERVICE = f"{STRUCTURE}/extension-levelOfServiceCode"    # on Claim and Claim.item (X12 1338)
REQUESTED_SERVICE = f"{STRUCTURE}/extension-requestedService"     # Claim.item -> ServiceRequest etc.
ITEM_TRACE_NUMBER = f"{STRUCTURE}/extension-itemTraceNumber"
ADMINISTRATION_REFERENCE_NUMBER = f"{STRUCTURE}/extension-administrationReferenceNumber"
SERVICE_LINE_NUMBER = f"{STRUCTURE}/extension-serviceLineNumber"  # CommunicationRequest.payload -> item
CLAIM_RESPONSE_REVIEWER = f"{STRUCTURE}/extension-claimResponseReviewer"  # PAS 2.2, on ClaimResponse
REVIEWER_HUMAN = "wasHumanReviewedFlag"                          # inside CLAIM_RESPONSE_REVIEWER
REVIEWER_NPI = "reviewerNPI"                                     # inside CLAIM_RESPONSE_REVIEWER

# --- code systems -----------------------------------------------------------------------------------
X12 = "https://codesystem.x12.org/005010"
X12_306 = f"{X12}/306"                       # Healthcare Services Outcome (review action)
X12_1338_SYSTEMS = (f"{X12}/1338", "http://codesystem.x12.org/005010/1338")  # level of service; 2.0.1 examples use http
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
PROCESS_PRIORITY = "http://terminology.hl7.org/CodeSystem/processpriority"
NOTE_TYPE = "http://hl7.org/fhir/note-type"
LOINC = "http://loinc.org"
NPI = "http://hl7.org/fhir/sid/us-npi"

# X12 306 review-action codes, with the display the IG's examples and the Inferno kit use.
PENDED = "A4"
REVIEW_ACTIONS = {
    "A1": "Certified in total",
    "A3": "Not Certified",
    "A4": "Pending",
    "A6": "Modified",
}

EXPEDITED_LEVEL_OF_SERVICE = "U"            # X12 1338 "Urgent"
EXPEDITED_PRIORITIES = ("stat", "urgent")   # Claim.priority codes read as expedited

# PAS additionalinfo.md ainfo-2/3: one LOINC 102089-0 asks for a payer's questionnaire, and the
# trace number that goes with it is the DTR context id, which here is an evaluation id.
QUESTIONNAIRE_REQUEST_LOINC = "102089-0"
CONTEXT_ID_SYSTEM = "urn:coverage-criteria:dtr-context"


@dataclass(frozen=True)
class Version:
    """How one PAS version is answered. Each row of ``VERSIONS`` is one published version."""

    pended_outcome: str          # ClaimResponse.outcome of a pended answer
    reviewer_extension: bool     # ClaimResponse.extension[claimResponseReviewer] exists
    bundle_identifier: bool      # the response Bundle carries an identifier (the kit adds one for 2.2)
    inquire_in_parameters: bool  # $inquire's Bundle wrapped in Parameters.parameter[return]


# The PAS 2.0.1 / 2.2 differences, and only here (shared/dtr-pas.md §3.3, §3.5):
# - 2.2 binds ClaimResponse.outcome to complete | error | partial: no `queued`; a pend is A4 alone.
# - 2.2 adds extension-claimResponseReviewer (wasHumanReviewedFlag, reviewerNPI).
# - the Inferno kit wraps the $inquire answer in Parameters for 2.2.0, not for 2.2.1.
VERSIONS = {
    "2.0.1": Version(pended_outcome="queued", reviewer_extension=False, bundle_identifier=False,
                     inquire_in_parameters=False),
    "2.1.0": Version(pended_outcome="queued", reviewer_extension=False, bundle_identifier=False,
                     inquire_in_parameters=False),
    "2.2.0": Version(pended_outcome="complete", reviewer_extension=True, bundle_identifier=True,
                     inquire_in_parameters=True),
    "2.2.1": Version(pended_outcome="complete", reviewer_extension=True, bundle_identifier=True,
                     inquire_in_parameters=False),
}
DEFAULT_VERSION = "2.0.1"  # an unversioned profile: the version CMS and ONC name (HTI-4)


def version_of(profiles: object) -> str:
    """The PAS version a resource's ``meta.profile`` names (``…/profile-claim|2.2.1``): the published
    version it names, else the latest published one not after it, else the default."""
    named = []
    for profile in profiles if isinstance(profiles, list) else []:
        if isinstance(profile, str) and profile.startswith(f"{STRUCTURE}/") and "|" in profile:
            number = _number(profile.rpartition("|")[2])
            if number is not None:
                named.append(number)
    if not named:
        return DEFAULT_VERSION
    wanted = max(named)
    known = sorted((_number(v), v) for v in VERSIONS)
    at_or_before = [name for number, name in known if number is not None and number <= wanted]
    return at_or_before[-1] if at_or_before else DEFAULT_VERSION


def _number(text: str) -> tuple[int, ...] | None:
    parts = text.split(".")
    return tuple(int(p) for p in parts) if parts and all(p.isdigit() and len(p) < 6 for p in parts) else None
