import Type from 'typebox';
import { PRESET_LIST } from './openai-compatible/preset-list.js';

/**
 * The cloud providers' environment variables, spread into EnvSchema: the names each vendor's own SDKs read
 * (AZURE_OPENAI_*, AZURE_TENANT_ID…, AWS_*), and for every OpenAI-compatible preset its key and `<PRESET>_BASE_URL`.
 */
const optionalStr = (description: string) => Type.Optional(Type.String({ description, minLength: 1 }));
const optionalUrl = (example: string) =>
  Type.Optional(Type.String({ pattern: '^https?://', description: `an http(s) URL such as ${example}` }));

const presetEnv = Object.fromEntries(
  PRESET_LIST.flatMap((p) => [
    ...(p.keyEnv ? [[p.keyEnv, optionalStr(`a ${p.label} API key`)] as const] : []),
    [p.baseUrlEnv, optionalUrl(p.baseUrl)] as const,
  ]),
);

export const CLOUD_ENV = {
  AZURE_OPENAI_API_KEY: optionalStr('an Azure OpenAI resource key'),
  AZURE_OPENAI_ENDPOINT: optionalUrl('https://my-resource.openai.azure.com'),
  AZURE_OPENAI_API_VERSION: Type.Optional(
    Type.String({
      pattern: '^(v1|preview|\\d{4}-\\d{2}-\\d{2}(-preview)?)$',
      description: 'v1, preview, or a dated api-version such as 2024-10-21',
    }),
  ),
  AZURE_TENANT_ID: optionalStr('a Microsoft Entra tenant id (with AZURE_CLIENT_ID and AZURE_CLIENT_SECRET)'),
  AZURE_CLIENT_ID: optionalStr('a Microsoft Entra application (client) id'),
  AZURE_CLIENT_SECRET: optionalStr('a Microsoft Entra client secret'),
  AZURE_AUTHORITY_HOST: optionalUrl('https://login.microsoftonline.com'),
  AWS_REGION: optionalStr('an AWS region such as us-east-1 (Bedrock)'),
  AWS_DEFAULT_REGION: optionalStr('an AWS region such as us-east-1 (used when AWS_REGION is not set)'),
  AWS_ACCESS_KEY_ID: optionalStr('an AWS access key id (with AWS_SECRET_ACCESS_KEY)'),
  AWS_SECRET_ACCESS_KEY: optionalStr('an AWS secret access key'),
  AWS_SESSION_TOKEN: optionalStr('an AWS session token (temporary credentials)'),
  AWS_PROFILE: optionalStr('a profile of ~/.aws/config and ~/.aws/credentials'),
  AWS_WEB_IDENTITY_TOKEN_FILE: optionalStr('a web identity token file (EKS IRSA, with AWS_ROLE_ARN)'),
  AWS_BEARER_TOKEN_BEDROCK: optionalStr('an Amazon Bedrock API key'),
  AWS_ENDPOINT_URL_BEDROCK_RUNTIME: optionalUrl('https://bedrock-runtime.us-east-1.amazonaws.com'),
  HUGGINGFACE_API_KEY: optionalStr('a Hugging Face access token'),
  HUGGINGFACE_BASE_URL: optionalUrl('https://router.huggingface.co/v1'),
  HUGGINGFACE_EMBEDDINGS_URL: optionalUrl('http://tei:8080 (a Text Embeddings Inference server)'),
  GEMINI_API_KEY: optionalStr('a Gemini API key (Google AI Studio)'),
  GEMINI_BASE_URL: optionalUrl('https://generativelanguage.googleapis.com'),
  GOOGLE_APPLICATION_CREDENTIALS: optionalStr('the path of a Google service-account key file (JSON)'),
  VERTEX_PROJECT: optionalStr('a Google Cloud project id'),
  VERTEX_LOCATION: optionalStr('a Vertex AI location such as us-central1 or global'),
  VERTEX_BASE_URL: optionalUrl('https://us-central1-aiplatform.googleapis.com'),
  COHERE_API_KEY: optionalStr('a Cohere API key'),
  COHERE_BASE_URL: optionalUrl('https://api.cohere.com'),
  GCE_METADATA_HOST: optionalStr('the metadata server host, metadata.google.internal by default'),
  ...presetEnv,
} as const;
