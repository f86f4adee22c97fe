// The chat's parameter panel (issue 23): temperature, max tokens and a system prompt override, sent with each
// message, edit and regenerate (the conversation API applies them to that reply only, over the assistant's).
import { useId } from 'react';
import { PresetControls } from './ReplyPresets';

/** The panel's fields as typed (empty: the default of the model or assistant). */
export interface ReplySettingsDraft {
  temperature: string;
  maxTokens: string;
  system: string;
  /** The system prompt field replaces the assistant's (an empty one sends none). */
  overrideSystem: boolean;
}

export const emptySettings: ReplySettingsDraft = {
  temperature: '',
  maxTokens: '',
  system: '',
  overrideSystem: false,
};

export interface ReplySettings {
  temperature?: number;
  max_tokens?: number;
  system_prompt?: string;
}

/** The request fields, or why the panel's values cannot be sent (the server checks them again). */
export function parseSettings(d: ReplySettingsDraft): { body: ReplySettings } | { error: string } {
  const body: ReplySettings = {};
  if (d.temperature.trim()) {
    const t = Number(d.temperature);
    if (!Number.isFinite(t) || t < 0 || t > 2) return { error: 'Temperature must be a number from 0 to 2.' };
    body.temperature = t;
  }
  if (d.maxTokens.trim()) {
    const n = Number(d.maxTokens);
    if (!Number.isInteger(n) || n < 1 || n > 1_000_000)
      return { error: 'Max tokens must be a whole number from 1 to 1,000,000.' };
    body.max_tokens = n;
  }
  if (d.overrideSystem) body.system_prompt = d.system;
  return { body };
}

const changed = (d: ReplySettingsDraft) =>
  [
    d.temperature.trim() && `temperature ${d.temperature.trim()}`,
    d.maxTokens.trim() && `max ${d.maxTokens.trim()} tokens`,
    d.overrideSystem && 'own system prompt',
  ]
    .filter(Boolean)
    .join(', ');

export function ReplySettingsPanel({
  userId,
  value,
  onChange,
}: {
  /** Whose saved presets the panel offers. */
  userId: string;
  value: ReplySettingsDraft;
  onChange: (next: ReplySettingsDraft) => void;
}) {
  const id = useId();
  const parsed = parseSettings(value);
  const summary = changed(value);
  const set = (patch: Partial<ReplySettingsDraft>) => onChange({ ...value, ...patch });
  return (
    <details className="reply-settings" data-testid="reply-settings">
      <summary>
        Reply settings
        <span className="muted">{summary ? ` (${summary})` : ' (defaults)'}</span>
      </summary>
      <div className="reply-settings-fields">
        <label htmlFor={`${id}-t`}>Temperature</label>
        <input
          id={`${id}-t`}
          type="number"
          inputMode="decimal"
          min={0}
          max={2}
          step={0.1}
          placeholder="default"
          value={value.temperature}
          onChange={(e) => set({ temperature: e.target.value })}
        />
        <label htmlFor={`${id}-m`}>Max tokens</label>
        <input
          id={`${id}-m`}
          type="number"
          inputMode="numeric"
          min={1}
          step={1}
          placeholder="default"
          value={value.maxTokens}
          onChange={(e) => set({ maxTokens: e.target.value })}
        />
        <label className="inline rs-wide">
          <input
            type="checkbox"
            checked={value.overrideSystem}
            onChange={(e) => set({ overrideSystem: e.target.checked })}
          />
          Override the system prompt
        </label>
        {value.overrideSystem && (
          <>
            <label htmlFor={`${id}-s`}>System prompt</label>
            <textarea
              id={`${id}-s`}
              className="rs-prompt"
              maxLength={32_000}
              placeholder="empty: no system prompt"
              value={value.system}
              onChange={(e) => set({ system: e.target.value })}
            />
          </>
        )}
        {'error' in parsed && (
          <p className="error rs-wide" role="alert">
            {parsed.error}
          </p>
        )}
        <button type="button" className="link-button rs-wide" onClick={() => onChange(emptySettings)}>
          Reset to defaults
        </button>
        <PresetControls userId={userId} value={value} onApply={onChange} />
      </div>
    </details>
  );
}
