"""The Admin GraphQL 2026-10 subset the dev store serves, in SDL, with Shopify's names."""

from __future__ import annotations

# Currency codes: the ones a generated store is likely to use. Shopify's enum is the full ISO list.
_CURRENCIES = (
    "AED ARS AUD BGN BRL CAD CHF CLP CNY COP CZK DKK EGP EUR GBP HKD HUF IDR ILS INR ISK JPY KRW "
    "MXN MYR NGN NOK NZD PEN PHP PKR PLN RON RSD SAR SEK SGD THB TRY TWD UAH USD VND ZAR"
)

ADMIN_SDL = (
    """
scalar DateTime
scalar Date
scalar Decimal
scalar Money
scalar URL
scalar UnsignedInt64
scalar JSON

enum CurrencyCode { """
    + _CURRENCIES
    + """ }

interface Node { id: ID! }

interface HasMetafields {
  metafield(namespace: String, key: String!): Metafield
  metafields(first: Int, after: String, last: Int, before: String, namespace: String,
    keys: [String!], reverse: Boolean = false): MetafieldConnection!
}

type PageInfo {
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
  endCursor: String
}

type MoneyV2 { amount: Decimal! currencyCode: CurrencyCode! }
type MoneyBag { shopMoney: MoneyV2! presentmentMoney: MoneyV2! }

type Shop implements Node {
  id: ID!
  name: String!
  myshopifyDomain: String!
  currencyCode: CurrencyCode!
  ianaTimezone: String!
}

type AccessScope { handle: String! description: String! }
type AppInstallation implements Node {
  id: ID!
  accessScopes: [AccessScope!]!
}

enum CustomerState { DECLINED DISABLED ENABLED INVITED }
enum CustomerSortKeys { CREATED_AT ID LOCATION NAME RELEVANCE UPDATED_AT }
enum ProductStatus { ACTIVE ARCHIVED DRAFT UNLISTED }
enum ProductSortKeys {
  CREATED_AT ID INVENTORY_TOTAL PRODUCT_TYPE PUBLISHED_AT RELEVANCE TITLE UPDATED_AT VENDOR
}
enum OrderSortKeys {
  CREATED_AT CUSTOMER_NAME DESTINATION FINANCIAL_STATUS FULFILLMENT_STATUS ID ORDER_NUMBER PO_NUMBER
  PROCESSED_AT RELEVANCE TOTAL_ITEMS_QUANTITY TOTAL_PRICE UPDATED_AT
}
enum OrderDisplayFinancialStatus {
  AUTHORIZED EXPIRED PAID PARTIALLY_PAID PARTIALLY_REFUNDED PENDING REFUNDED VOIDED
}

type Customer implements Node & HasMetafields {
  id: ID!
  legacyResourceId: UnsignedInt64!
  createdAt: DateTime!
  updatedAt: DateTime!
  state: CustomerState!
  tags: [String!]!
  numberOfOrders: UnsignedInt64!
  amountSpent: MoneyV2!
  orders(first: Int, after: String, last: Int, before: String, reverse: Boolean = false,
    query: String): OrderConnection!
  metafield(namespace: String, key: String!): Metafield
  metafields(first: Int, after: String, last: Int, before: String, namespace: String,
    keys: [String!], reverse: Boolean = false): MetafieldConnection!
}
type CustomerEdge { cursor: String! node: Customer! }
type CustomerConnection { edges: [CustomerEdge!]! nodes: [Customer!]! pageInfo: PageInfo! }

type ProductPriceRangeV2 { minVariantPrice: MoneyV2! maxVariantPrice: MoneyV2! }

type ProductVariant implements Node & HasMetafields {
  id: ID!
  legacyResourceId: UnsignedInt64!
  title: String!
  sku: String
  price: Money!
  product: Product!
  inventoryItem: InventoryItem!
  metafield(namespace: String, key: String!): Metafield
  metafields(first: Int, after: String, last: Int, before: String, namespace: String,
    keys: [String!], reverse: Boolean = false): MetafieldConnection!
}
type InventoryItem implements Node { id: ID! unitCost: MoneyV2 }
type ProductVariantEdge { cursor: String! node: ProductVariant! }
type ProductVariantConnection {
  edges: [ProductVariantEdge!]! nodes: [ProductVariant!]! pageInfo: PageInfo!
}

type Product implements Node & HasMetafields {
  id: ID!
  legacyResourceId: UnsignedInt64!
  title: String!
  handle: String!
  productType: String!
  vendor: String!
  status: ProductStatus!
  tags: [String!]!
  createdAt: DateTime!
  updatedAt: DateTime!
  priceRangeV2: ProductPriceRangeV2!
  variants(first: Int, after: String, last: Int, before: String,
    reverse: Boolean = false): ProductVariantConnection!
  metafield(namespace: String, key: String!): Metafield
  metafields(first: Int, after: String, last: Int, before: String, namespace: String,
    keys: [String!], reverse: Boolean = false): MetafieldConnection!
}
type ProductEdge { cursor: String! node: Product! }
type ProductConnection { edges: [ProductEdge!]! nodes: [Product!]! pageInfo: PageInfo! }

type LineItem implements Node {
  id: ID!
  title: String!
  sku: String
  quantity: Int!
  currentQuantity: Int!
  product: Product
  variant: ProductVariant
  originalUnitPriceSet: MoneyBag!
  totalDiscountSet: MoneyBag!
  isGiftCard: Boolean!
}
type LineItemEdge { cursor: String! node: LineItem! }
type LineItemConnection { edges: [LineItemEdge!]! nodes: [LineItem!]! pageInfo: PageInfo! }

type Order implements Node & HasMetafields {
  id: ID!
  legacyResourceId: UnsignedInt64!
  name: String!
  customer: Customer
  createdAt: DateTime!
  processedAt: DateTime!
  updatedAt: DateTime!
  cancelledAt: DateTime
  test: Boolean!
  currencyCode: CurrencyCode!
  presentmentCurrencyCode: CurrencyCode!
  currentTotalPriceSet: MoneyBag!
  totalPriceSet: MoneyBag!
  displayFinancialStatus: OrderDisplayFinancialStatus
  sourceName: String
  tags: [String!]!
  lineItems(first: Int, after: String, last: Int, before: String,
    reverse: Boolean = false): LineItemConnection!
  refunds(first: Int): [Refund!]!
  metafield(namespace: String, key: String!): Metafield
  metafields(first: Int, after: String, last: Int, before: String, namespace: String,
    keys: [String!], reverse: Boolean = false): MetafieldConnection!
}
type Refund { id: ID! createdAt: DateTime! }
type OrderEdge { cursor: String! node: Order! }
type OrderConnection { edges: [OrderEdge!]! nodes: [Order!]! pageInfo: PageInfo! }

enum MetafieldOwnerType {
  CUSTOMER PRODUCT PRODUCTVARIANT ORDER SHOP COLLECTION COMPANY DRAFTORDER LOCATION
}

type Metafield implements Node {
  id: ID!
  namespace: String!
  key: String!
  value: String!
  type: String!
  jsonValue: JSON!
  ownerType: MetafieldOwnerType!
  compareDigest: String!
  createdAt: DateTime!
  updatedAt: DateTime!
  definition: MetafieldDefinition
}
type MetafieldEdge { cursor: String! node: Metafield! }
type MetafieldConnection { edges: [MetafieldEdge!]! nodes: [Metafield!]! pageInfo: PageInfo! }

type MetafieldDefinitionType { name: String! }

type MetafieldDefinition implements Node {
  id: ID!
  name: String!
  namespace: String!
  key: String!
  description: String
  ownerType: MetafieldOwnerType!
  type: MetafieldDefinitionType!
}
type MetafieldDefinitionEdge { cursor: String! node: MetafieldDefinition! }
type MetafieldDefinitionConnection {
  edges: [MetafieldDefinitionEdge!]! nodes: [MetafieldDefinition!]! pageInfo: PageInfo!
}

enum BulkOperationStatus { CANCELED CANCELING COMPLETED CREATED EXPIRED FAILED RUNNING }
enum BulkOperationType { MUTATION QUERY }
enum BulkOperationErrorCode { ACCESS_DENIED INTERNAL_SERVER_ERROR TIMEOUT }

type BulkOperation implements Node {
  id: ID!
  status: BulkOperationStatus!
  type: BulkOperationType!
  query: String!
  createdAt: DateTime!
  completedAt: DateTime
  errorCode: BulkOperationErrorCode
  objectCount: UnsignedInt64!
  rootObjectCount: UnsignedInt64!
  fileSize: UnsignedInt64
  url: URL
  partialDataUrl: URL
}

type UserError { field: [String!] message: String! }

type TagsAddPayload { node: Node userErrors: [UserError!]! }
type TagsRemovePayload { node: Node userErrors: [UserError!]! }

enum MetafieldsSetUserErrorCode {
  APP_NOT_AUTHORIZED BLANK CAPABILITY_VIOLATION INCLUSION INTERNAL_ERROR INVALID
  INVALID_COMPARE_DIGEST
  INVALID_TYPE INVALID_VALUE LESS_THAN_OR_EQUAL_TO PRESENT STALE_OBJECT TAKEN TOO_LONG TOO_SHORT
}
type MetafieldsSetUserError {
  field: [String!]
  message: String!
  code: MetafieldsSetUserErrorCode
  elementIndex: Int
}
input MetafieldsSetInput {
  ownerId: ID!
  namespace: String
  key: String!
  value: String!
  type: String
  compareDigest: String
}
type MetafieldsSetPayload { metafields: [Metafield!] userErrors: [MetafieldsSetUserError!]! }

input MetafieldIdentifierInput { ownerId: ID! namespace: String! key: String! }
type MetafieldIdentifier { ownerId: ID! namespace: String! key: String! }
type MetafieldsDeletePayload { deletedMetafields: [MetafieldIdentifier] userErrors: [UserError!]! }

input MetafieldDefinitionValidationInput { name: String! value: String! }
input MetafieldDefinitionInput {
  name: String!
  namespace: String
  key: String!
  type: String!
  ownerType: MetafieldOwnerType!
  description: String
  validations: [MetafieldDefinitionValidationInput!]
  pin: Boolean = false
}
enum MetafieldDefinitionCreateUserErrorCode {
  BLANK DUPLICATE_OPTION INCLUSION INVALID INVALID_OPTION PRESENT TAKEN TOO_LONG TOO_SHORT
  UNSTRUCTURED_ALREADY_EXISTS
}
type MetafieldDefinitionCreateUserError {
  field: [String!]
  message: String!
  code: MetafieldDefinitionCreateUserErrorCode
}
type MetafieldDefinitionCreatePayload {
  createdDefinition: MetafieldDefinition
  userErrors: [MetafieldDefinitionCreateUserError!]!
}

enum BulkOperationUserErrorCode { INVALID LIMIT_REACHED OPERATION_IN_PROGRESS }
type BulkOperationUserError { field: [String!] message: String! code: BulkOperationUserErrorCode }
type BulkOperationRunQueryPayload {
  bulkOperation: BulkOperation
  userErrors: [BulkOperationUserError!]!
}
enum BulkMutationErrorCode {
  INTERNAL_FILE_SERVER_ERROR INVALID_MUTATION INVALID_STAGED_UPLOAD_FILE LIMIT_REACHED
  NO_SUCH_FILE OPERATION_IN_PROGRESS
}
type BulkMutationUserError { field: [String!] message: String! code: BulkMutationErrorCode }
type BulkOperationRunMutationPayload {
  bulkOperation: BulkOperation
  userErrors: [BulkMutationUserError!]!
}

enum StagedUploadTargetGenerateUploadResource {
  BULK_MUTATION_VARIABLES COLLECTION_IMAGE FILE IMAGE MODEL_3D PRODUCT_IMAGE SHOP_IMAGE
  URL_REDIRECT_IMPORT VIDEO
}
enum StagedUploadHttpMethodType { POST PUT }
input StagedUploadInput {
  resource: StagedUploadTargetGenerateUploadResource!
  filename: String!
  mimeType: String!
  httpMethod: StagedUploadHttpMethodType = PUT
  fileSize: UnsignedInt64
}
type StagedUploadParameter { name: String! value: String! }
type StagedMediaUploadTarget { url: URL resourceUrl: URL parameters: [StagedUploadParameter!]! }
type StagedUploadsCreatePayload {
  stagedTargets: [StagedMediaUploadTarget!]
  userErrors: [UserError!]!
}

type QueryRoot {
  shop: Shop!
  currentAppInstallation: AppInstallation!
  node(id: ID!): Node
  nodes(ids: [ID!]!): [Node]!
  customer(id: ID!): Customer
  customers(first: Int, after: String, last: Int, before: String, query: String,
    reverse: Boolean = false, sortKey: CustomerSortKeys = ID): CustomerConnection!
  product(id: ID!): Product
  products(first: Int, after: String, last: Int, before: String, query: String,
    reverse: Boolean = false, sortKey: ProductSortKeys = ID): ProductConnection!
  order(id: ID!): Order
  orders(first: Int, after: String, last: Int, before: String, query: String,
    reverse: Boolean = false, sortKey: OrderSortKeys = ID): OrderConnection!
  metafieldDefinitions(ownerType: MetafieldOwnerType!, first: Int, after: String, last: Int,
    before: String, namespace: String, key: String): MetafieldDefinitionConnection!
  bulkOperation(id: ID!): BulkOperation
  currentBulkOperation(type: BulkOperationType = QUERY): BulkOperation
}

type Mutation {
  tagsAdd(id: ID!, tags: [String!]!): TagsAddPayload
  tagsRemove(id: ID!, tags: [String!]!): TagsRemovePayload
  metafieldsSet(metafields: [MetafieldsSetInput!]!): MetafieldsSetPayload
  metafieldsDelete(metafields: [MetafieldIdentifierInput!]!): MetafieldsDeletePayload
  metafieldDefinitionCreate(definition: MetafieldDefinitionInput!): MetafieldDefinitionCreatePayload
  stagedUploadsCreate(input: [StagedUploadInput!]!): StagedUploadsCreatePayload
  bulkOperationRunQuery(query: String!, groupObjects: Boolean = false): BulkOperationRunQueryPayload
  bulkOperationRunMutation(mutation: String!, stagedUploadPath: String!, clientIdentifier: String,
    groupObjects: Boolean = false): BulkOperationRunMutationPayload
}

schema { query: QueryRoot mutation: Mutation }
"""
)
