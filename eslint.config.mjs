// ESLint (typescript-eslint) for the whole project, and the import rule of ARCHITECTURE.md: each source
// folder may import only the folders named for it there. Formatting is Prettier's (`.prettierrc.json`).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The folders of ours each source folder may import (ARCHITECTURE.md's table). The graph has no cycle:
 * test/architecture/imports.test.ts checks this map and the imports in the tree (type imports and
 * require() included).
 */
export const MAY_IMPORT = {
  core: [],
  event: ['core'],
  writer: ['core', 'event'],
  schemas: ['core', 'event'],
  relay: ['core', 'event', 'schemas'],
  projector: ['core', 'event', 'schemas'],
  // The auditor's tools depend on the history's own definitions only (core/, event/).
  audit: ['core', 'event'],
  infra: ['core'],
  console: ['core', 'event', 'writer', 'relay'],
  cli: ['core', 'event', 'writer', 'schemas', 'relay', 'projector', 'audit', 'infra', 'console'],
};

/** Folders of ours a folder must not import (relative specifiers are resolved by their path segments). */
const FORBIDDEN = Object.fromEntries(Object.entries(MAY_IMPORT).map(([folder, allowed]) => [folder, Object.keys(MAY_IMPORT).filter((f) => f !== folder && !allowed.includes(f))]));

const boundaries = Object.entries(FORBIDDEN)
  .filter(([, forbidden]) => forbidden.length > 0)
  .map(([folder, forbidden]) => ({
    files: [`${folder}/**/*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: forbidden.map((f) => ({
            regex: `^(\\.\\./)+${f}(/|$)`,
            message: `${folder}/ must not import ${f}/ (ARCHITECTURE.md: what each folder may import)`,
          })),
        },
      ],
    },
  }));

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.stack/**', 'bench/results/**', 'examples/**/node_modules/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        __dirname: 'readonly',
        require: 'readonly',
        module: 'writable',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        URL: 'readonly',
        fetch: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
        performance: 'readonly',
        globalThis: 'readonly',
        structuredClone: 'readonly',
        queueMicrotask: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    // TypeScript checks names; the browser script of the console runs in the page.
    files: ['**/*.ts'],
    rules: { 'no-undef': 'off' },
  },
  {
    files: ['console/assets/**/*.js'],
    languageOptions: {
      sourceType: 'script',
      globals: {
        document: 'readonly',
        window: 'readonly',
        sessionStorage: 'readonly',
        location: 'readonly',
        DOMParser: 'readonly',
        Element: 'readonly',
        HTMLElement: 'readonly',
        Event: 'readonly',
      },
    },
  },
  {
    // Library code logs through the pino logger it is given.
    files: ['core/**/*.ts', 'event/**/*.ts', 'writer/**/*.ts', 'schemas/**/*.ts', 'relay/**/*.ts', 'projector/**/*.ts', 'console/**/*.ts'],
    rules: { 'no-console': 'error' },
  },
  ...boundaries,
);
