import type { BuildState } from '../api.ts';

export function StateBadge({ state }: { state: BuildState }) {
  return <span class={`state state-${state}`}>{state}</span>;
}

export function Problem({ text }: { text: string | undefined }) {
  if (!text) return null;
  return (
    <p class="error" role="alert">
      {text}
    </p>
  );
}
