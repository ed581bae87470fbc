// Types every GraphQL document of the portal from the API's schema; `npm run codegen` writes
// src/gql/, which is committed, and CI fails when regenerating it changes anything.
import type { CodegenConfig } from '@graphql-codegen/cli';

const config: CodegenConfig = {
  schema: '../schema.graphql',
  documents: ['src/**/*.{ts,tsx}', '!src/gql/**/*'],
  ignoreNoDocuments: false,
  generates: {
    './src/gql/': {
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: {
        enumsAsTypes: true,
        useTypeImports: true,
        scalars: {
          DateTime: 'string',
          JSON: 'unknown',
          Upload: 'File',
          StepColumn: 'number[]',
          FloatColumn: 'Array<number | null>',
        },
      },
    },
  },
};

export default config;
