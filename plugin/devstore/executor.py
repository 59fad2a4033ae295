"""One Admin GraphQL request, end to end: parse, validate, cost, throttle, execute, refund.

HTTP concerns (auth, versions, faults) stay in server.py; this module only turns a request body
into a status code and a Shopify-shaped JSON body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    execute,
    parse,
    validate,
)
from graphql.execution.values import VariableValues, get_variable_values
from graphql.utilities import get_operation_ast

from plugin.devstore.context import ResolveContext
from plugin.devstore.cost import actual_cost, requested_cost
from plugin.devstore.resolvers import default_field_resolver
from plugin.devstore.throttle import LeakyBucketThrottle

RATE_LIMITS_DOC = "https://shopify.dev/api/usage/rate-limits"


@dataclass(frozen=True, slots=True)
class GraphQLReply:
    status_code: int
    body: dict[str, Any]
    executed_mutation: bool = False
    retry_after_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    document: DocumentNode
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    variables: dict[str, Any]


def coerce_variables(
    schema: GraphQLSchema, request: ParsedRequest
) -> VariableValues | list[GraphQLError]:
    """The variables as execution will see them (defaults in, 250.0 an Int 250), for the cost
    walk; or the errors Shopify reports for variables that do not fit their declared types."""
    definitions = request.operation.variable_definitions or ()
    coerced = get_variable_values(schema, definitions, request.variables)
    return coerced if isinstance(coerced, VariableValues) else list(coerced)


class DocumentCache:
    """Parsed and validated documents by query text: apps send the same few queries many times,
    and parsing plus validation is most of the work of a small mutation. Kept small: a batch of
    aliased mutations is a document of its own each time, and hundreds of large parsed
    documents held at once made the garbage collector's full passes last seconds."""

    def __init__(self, schema: GraphQLSchema, size: int = 64) -> None:
        self.schema = schema
        self.size = size
        self._entries: dict[str, DocumentNode | list[GraphQLError]] = {}

    def get(self, query: str) -> DocumentNode | list[GraphQLError]:
        found = self._entries.get(query)
        if found is None:
            found = self._parse(query)
            if len(self._entries) >= self.size:
                self._entries.pop(next(iter(self._entries)))
            self._entries[query] = found
        return found

    def _parse(self, query: str) -> DocumentNode | list[GraphQLError]:
        try:
            document = parse(query)
        except GraphQLError as error:
            return [error]
        errors = validate(self.schema, document)
        return list(errors) if errors else document


def parse_request(
    schema: GraphQLSchema, payload: Any, cache: DocumentCache | None = None
) -> ParsedRequest | list[GraphQLError] | None:
    """The parsed request, GraphQL errors to report, or None when the body has no query at all."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("query"), str):
        return None
    document = (cache or DocumentCache(schema)).get(payload["query"])
    if isinstance(document, list):
        return document
    operation = get_operation_ast(document, payload.get("operationName"))
    if operation is None:
        return [GraphQLError("An operation name is required when several operations are sent.")]
    fragments = {
        node.name.value: node
        for node in document.definitions
        if isinstance(node, FragmentDefinitionNode)
    }
    variables = payload.get("variables") or {}
    if not isinstance(variables, Mapping):
        return [GraphQLError("Variables must be a JSON object.")]
    return ParsedRequest(document, operation, fragments, dict(variables))


def run_operation(
    schema: GraphQLSchema, request: ParsedRequest, context: ResolveContext
) -> ExecutionResult:
    result = execute(
        schema,
        request.document,
        context_value=context,
        variable_values=request.variables,
        operation_name=request.operation.name.value if request.operation.name else None,
        field_resolver=default_field_resolver,
    )
    assert isinstance(result, ExecutionResult)  # every resolver is synchronous
    return result


class AdminGraphQL:
    """The GraphQL side of the dev store, shared by every shop and token of one app.

    The throttle is keyed by shop domain: Shopify's bucket is per app and shop, so a refreshed
    (or second) access token for the same shop draws from the same bucket."""

    def __init__(
        self,
        schema: GraphQLSchema,
        throttle: LeakyBucketThrottle,
        *,
        max_query_cost: int,
        throttle_status_code: int,
    ) -> None:
        self.schema = schema
        self.throttle = throttle
        self.max_query_cost = max_query_cost
        self.throttle_status_code = throttle_status_code
        self.documents = DocumentCache(schema)

    def _cost(self, shop: str, requested: int, actual: int | None) -> dict[str, Any]:
        return {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": self.throttle.status(shop).as_json(),
            }
        }

    def handle(self, shop: str, payload: Any, context: ResolveContext) -> GraphQLReply:
        parsed = parse_request(self.schema, payload, self.documents)
        if parsed is None:
            body = {"errors": {"query": "Required parameter missing or invalid"}}
            return GraphQLReply(400, body)
        variables = parsed if isinstance(parsed, list) else coerce_variables(self.schema, parsed)
        if isinstance(variables, list):
            errors = [error.formatted for error in variables]
            return GraphQLReply(200, {"errors": errors, "extensions": self._cost(shop, 0, 0)})
        assert isinstance(parsed, ParsedRequest)
        requested = requested_cost(self.schema, parsed.operation, parsed.fragments, variables)
        if requested > self.max_query_cost:
            return GraphQLReply(200, self._max_cost_exceeded(shop, requested))
        if not self.throttle.try_acquire(shop, requested):
            wait = self.throttle.seconds_until(shop, requested)
            body = self._throttled(shop, requested)
            return GraphQLReply(self.throttle_status_code, body, retry_after_seconds=wait)
        return self._execute(shop, parsed, variables, context, requested)

    def _execute(
        self,
        shop: str,
        parsed: ParsedRequest,
        variables: VariableValues,
        context: ResolveContext,
        requested: int,
    ) -> GraphQLReply:
        result = run_operation(self.schema, parsed, context)
        actual = actual_cost(
            self.schema, parsed.operation, parsed.fragments, variables, result.data
        )
        self.throttle.settle(shop, requested, actual)
        body: dict[str, Any] = {}
        if result.errors:
            body["errors"] = [error.formatted for error in result.errors]
        body["data"] = result.data
        body["extensions"] = self._cost(shop, requested, actual)
        is_mutation = parsed.operation.operation == OperationType.MUTATION
        return GraphQLReply(200, body, executed_mutation=is_mutation)

    def _throttled(self, shop: str, requested: int) -> dict[str, Any]:
        error = {
            "message": "Throttled",
            "extensions": {"code": "THROTTLED", "documentation": RATE_LIMITS_DOC},
        }
        return {"errors": [error], "extensions": self._cost(shop, requested, None)}

    def _max_cost_exceeded(self, shop: str, requested: int) -> dict[str, Any]:
        message = (
            f"Query cost is {requested}, which exceeds the single query max cost limit "
            f"({self.max_query_cost}).\n\nSee {RATE_LIMITS_DOC} for more information on how the\n"
            "cost of a query is calculated.\n\nTo query larger amounts of data with fewer limits, "
            "bulk operations should be used instead.\nSee "
            "https://shopify.dev/api/usage/bulk-operations/queries for usage details.\n"
        )
        error = {
            "message": message,
            "extensions": {
                "code": "MAX_COST_EXCEEDED",
                "cost": requested,
                "maxCost": self.max_query_cost,
                "documentation": RATE_LIMITS_DOC,
            },
        }
        return {"errors": [error], "extensions": self._cost(shop, requested, None)}
