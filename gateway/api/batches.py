"""Batches and files over HTTP, in each vendor's shapes (gateway/batches/ does the work):

- Anthropic's Message Batches, on the Anthropic API (`/anthropic/v1/messages/batches` and, for an SDK whose
  base_url is our root, `/v1/messages/batches`): create, list, retrieve, cancel, results (JSONL), delete.
- OpenAI's Files (`/v1/files`, purpose `batch`) and Batch API (`/v1/batches`), on the OpenAI API.

A batch or file of another tenant is a 404, the same as one that never existed.
"""

from __future__ import annotations

from django.conf import settings
from django.http import StreamingHttpResponse
from ninja import Router

from common.db import db_unit

from ..batches import executor, formats, selectors, services, storage
from ..batches.models import Batch, BatchFile
from ..core import GatewayError, invalid
from ..pipeline import json_response, parse_json_body

_PAGE_MAX = 1000


def _limit(request, default: int, maximum: int) -> int:
    raw = request.GET.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise invalid(f"limit must be an integer from 1 to {maximum}.", "limit")
    return int(raw)


def _not_found(kind: str, public_id: str, param: str | None = None) -> GatewayError:
    return GatewayError(404, f"No {kind} found with id '{public_id}'.", code="not_found", param=param,
                        type="invalid_request_error")


_batch_get = db_unit(selectors.batch_get)
_batch_state = db_unit(selectors.batch_state)
_batches_listed = db_unit(selectors.batches_listed)


# --- Anthropic -----------------------------------------------------------------------------------------


def _results_url(request, public_id: str) -> str:
    # On the mount the client used, so the SDK's follow-up GET carries the same key to the same API.
    root = request.path.split("/v1/messages/batches")[0]
    return request.build_absolute_uri(f"{root}/v1/messages/batches/{public_id}/results")


async def _anthropic_batch(request, batch: Batch) -> dict:
    return formats.anthropic_batch(await _batch_state(batch), _results_url(request, batch.public_id))


async def _anthropic_get(request, batch_id: str) -> Batch:
    batch = await _batch_get(tenant_id=request.auth.tenant_id, vendor=Batch.Vendor.ANTHROPIC, public_id=batch_id)
    if batch is None:
        raise _not_found("message batch", batch_id)
    return batch


def add_anthropic_operations(router: Router) -> None:
    @router.post("/messages/batches")
    async def create(request):
        try:
            lines = formats.anthropic_requests(parse_json_body(request))
        except formats.BatchInputError as exc:
            raise invalid(exc.message, exc.param) from None
        batch = await db_unit(services.batch_create_anthropic)(principal=request.auth, lines=lines)
        await executor.batch_start(batch.pk)
        return json_response(await _anthropic_batch(request, batch))

    @router.get("/messages/batches")
    async def list_batches(request):
        limit = _limit(request, 20, _PAGE_MAX)
        batches, has_more = await _batches_listed(
            tenant_id=request.auth.tenant_id, vendor=Batch.Vendor.ANTHROPIC, limit=limit,
            after=request.GET.get("after_id"), before=request.GET.get("before_id"))
        data = [await _anthropic_batch(request, batch) for batch in batches]
        return json_response({"data": data, "has_more": has_more, "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None})

    @router.get("/messages/batches/{batch_id}")
    async def retrieve(request, batch_id: str):
        return json_response(await _anthropic_batch(request, await _anthropic_get(request, batch_id)))

    @router.post("/messages/batches/{batch_id}/cancel")
    async def cancel(request, batch_id: str):
        batch = await db_unit(services.batch_cancel)(batch=await _anthropic_get(request, batch_id))
        return json_response(await _anthropic_batch(request, batch))

    @router.delete("/messages/batches/{batch_id}")
    async def delete(request, batch_id: str):
        batch = await _anthropic_get(request, batch_id)
        if batch.status not in Batch.ENDED:
            raise invalid(f"Message batch {batch_id} is still processing: cancel it first, and delete it once it "
                          "has ended.")
        await db_unit(services.batch_delete)(batch=batch)
        return json_response({"id": batch_id, "type": "message_batch_deleted"})

    @router.get("/messages/batches/{batch_id}/results")
    async def results(request, batch_id: str):
        batch = await _anthropic_get(request, batch_id)
        if batch.status not in Batch.ENDED or not batch.results_name:
            raise invalid(f"Message batch {batch_id} has no results yet: they are available once it has ended.")
        return _stored(batch.results_name, "application/binary")


def _stored(name: str, content_type: str) -> StreamingHttpResponse:
    try:
        handle = storage.open(name)
    except FileNotFoundError:
        raise GatewayError(404, "The results of this batch are no longer available.", code="not_found") from None
    return StreamingHttpResponse(storage.chunks(handle), content_type=content_type)


# --- OpenAI --------------------------------------------------------------------------------------------


async def _file_get(request, file_id: str) -> BatchFile:
    file = await db_unit(selectors.file_get)(tenant_id=request.auth.tenant_id, public_id=file_id)
    if file is None:
        raise GatewayError(404, f"No such File object: {file_id}", code="not_found", param="id",
                           type="invalid_request_error")
    return file


async def _openai_get(request, batch_id: str) -> Batch:
    batch = await _batch_get(tenant_id=request.auth.tenant_id, vendor=Batch.Vendor.OPENAI, public_id=batch_id)
    if batch is None:
        raise _not_found("batch", batch_id)
    return batch


async def _openai_batch(batch: Batch) -> dict:
    return formats.openai_batch(await _batch_state(batch))


def add_openai_operations(router: Router) -> None:
    @router.post("/files")
    async def upload(request):
        declared = request.META.get("CONTENT_LENGTH")
        limit = settings.BATCH_FILE_MAX_BYTES
        if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
            raise _too_large(limit)
        upload, purpose = request.FILES.get("file"), request.POST.get("purpose")
        if upload is None:
            raise invalid("Missing required parameter: 'file' (a multipart file field).", "file")
        if purpose != "batch":
            raise invalid(f"Invalid value for 'purpose': {purpose!r}. This gateway stores files for the Batch API "
                          "only: use 'batch'.", "purpose")
        if upload.size > limit:
            raise _too_large(limit)
        seconds = _expires_after(request.POST)
        file = await db_unit(services.file_create)(principal=request.auth, filename=upload.name or "upload.jsonl",
                                                   content=upload, size=upload.size, purpose="batch",
                                                   expires_after_seconds=seconds)
        return json_response(selectors.file_payload(file))

    @router.get("/files")
    async def list_files(request):
        limit = _limit(request, 10_000, 10_000)
        order = request.GET.get("order", "desc")
        if order not in ("asc", "desc"):
            raise invalid("order must be 'asc' or 'desc'.", "order")
        files, has_more = await db_unit(selectors.files_listed)(
            tenant_id=request.auth.tenant_id, purpose=request.GET.get("purpose"), limit=limit, order=order,
            after=request.GET.get("after"))
        data = [selectors.file_payload(file) for file in files]
        return json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else "",
                              "last_id": data[-1]["id"] if data else "", "has_more": has_more})

    @router.get("/files/{file_id}")
    async def retrieve_file(request, file_id: str):
        return json_response(selectors.file_payload(await _file_get(request, file_id)))

    @router.get("/files/{file_id}/content")
    async def file_content(request, file_id: str):
        file = await _file_get(request, file_id)
        return _stored(file.storage_name, "application/jsonl")

    @router.delete("/files/{file_id}")
    async def delete_file(request, file_id: str):
        await db_unit(services.file_delete)(file=await _file_get(request, file_id))
        return json_response({"id": file_id, "object": "file", "deleted": True})

    @router.post("/batches")
    async def create_batch(request):
        body = parse_json_body(request)
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        endpoint, window = body.get("endpoint"), body.get("completion_window")
        if endpoint not in formats.OPENAI_ENDPOINTS:
            raise invalid(f"Invalid value for 'endpoint': {endpoint!r}. Supported: "
                          f"{', '.join(formats.OPENAI_ENDPOINTS)}.", "endpoint")
        if window != "24h":
            raise invalid(f"Invalid value for 'completion_window': {window!r}. Supported: '24h'.",
                          "completion_window")
        metadata = _metadata(body.get("metadata"))
        seconds = _expiry(body.get("output_expires_after"), "output_expires_after")
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str) or not file_id:
            raise invalid("Missing required parameter: 'input_file_id'.", "input_file_id")
        file = await _file_get(request, file_id)
        if file.purpose != BatchFile.Purpose.BATCH:
            raise invalid(f"The file {file_id} has purpose '{file.purpose}'; a batch reads a file uploaded with "
                          "purpose 'batch'.", "input_file_id")
        batch = await db_unit(services.batch_create_openai)(principal=request.auth, input_file=file,
                                                            endpoint=endpoint, metadata=metadata,
                                                            output_expires_after=seconds)
        if batch.status == Batch.Status.IN_PROGRESS:
            await executor.batch_start(batch.pk)
        return json_response(await _openai_batch(batch))

    @router.get("/batches")
    async def list_batches(request):
        limit = _limit(request, 20, 100)
        batches, has_more = await _batches_listed(tenant_id=request.auth.tenant_id, vendor=Batch.Vendor.OPENAI,
                                                  limit=limit, after=request.GET.get("after"), before=None)
        data = [await _openai_batch(batch) for batch in batches]
        body = {"object": "list", "data": data, "has_more": has_more}
        if data:
            body |= {"first_id": data[0]["id"], "last_id": data[-1]["id"]}
        return json_response(body)

    @router.get("/batches/{batch_id}")
    async def retrieve_batch(request, batch_id: str):
        return json_response(await _openai_batch(await _openai_get(request, batch_id)))

    @router.post("/batches/{batch_id}/cancel")
    async def cancel_batch(request, batch_id: str):
        batch = await _openai_get(request, batch_id)
        if batch.status not in (Batch.Status.IN_PROGRESS, Batch.Status.CANCELLING):
            raise GatewayError(409, f"Cannot cancel a batch with status '{batch.status}'.", code="batch_not_running",
                               type="invalid_request_error")
        return json_response(await _openai_batch(await db_unit(services.batch_cancel)(batch=batch)))


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"File too large: the limit is {limit} bytes (BATCH_FILE_MAX_BYTES).",
                        code="file_too_large", param="file", type="invalid_request_error")


def _expires_after(form) -> int | None:
    anchor, seconds = form.get("expires_after[anchor]"), form.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    return _expiry({"anchor": anchor, "seconds": int(seconds) if (seconds or "").isdigit() else seconds},
                   "expires_after")


def _expiry(value, param: str) -> int | None:
    """OpenAI's expiration policy: {"anchor": "created_at", "seconds": 3600 .. 2592000}."""
    if value is None:
        return None
    seconds = value.get("seconds") if isinstance(value, dict) else None
    if (not isinstance(value, dict) or value.get("anchor") != "created_at" or not isinstance(seconds, int)
            or isinstance(seconds, bool) or not 3600 <= seconds <= 2_592_000):
        raise invalid(f"'{param}' must be {{\"anchor\": \"created_at\", \"seconds\": 3600 to 2592000}}.", param)
    return seconds


def _metadata(value) -> dict | None:
    """OpenAI's Metadata: at most 16 string pairs, keys up to 64 characters, values up to 512."""
    if value is None:
        return None
    if (not isinstance(value, dict) or len(value) > 16
            or not all(isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
                       for k, v in value.items())):
        raise invalid("'metadata' must be an object of at most 16 string values (keys up to 64 characters, "
                      "values up to 512).", "metadata")
    return value
