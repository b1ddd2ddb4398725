import { extendZodWithOpenApi } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

// The gateway generates its OpenAPI document from these schemas.
// zod-to-openapi's `.openapi()` exists only on schemas created after this
// call, so every contracts module takes `z` from here.
extendZodWithOpenApi(z);

export { z };
