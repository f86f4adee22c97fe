// Saved presets of the reply settings (issue 23): the user names the panel's values, applies or deletes them later.
// The server has no per-user preferences store, so they live in this browser's localStorage under the user's id:
// they follow the user across reloads and sign-ins in this browser, not to another browser or device.
import { useEffect, useId, useState } from 'react';
import { parseSettings, type ReplySettingsDraft } from './ReplySettings';

export interface Preset {
  name: string;
  settings: ReplySettingsDraft;
}

export const MAX_PRESETS = 50;
export const MAX_NAME = 60;

const storageKey = (userId: string) => `colloquy.presets.${userId}`;

const isDraft = (v: unknown): v is ReplySettingsDraft => {
  const d = v as Partial<ReplySettingsDraft> | null;
  return (
    typeof d === 'object' &&
    d !== null &&
    typeof d.temperature === 'string' &&
    typeof d.maxTokens === 'string' &&
    typeof d.system === 'string' &&
    typeof d.overrideSystem === 'boolean'
  );
};

/** The user's presets; a missing or damaged entry (edited by hand, another version) reads as none. */
export function loadPresets(userId: string): Preset[] {
  try {
    const raw: unknown = JSON.parse(localStorage.getItem(storageKey(userId)) ?? '[]');
    if (!Array.isArray(raw)) return [];
    return raw
      .filter((p): p is Preset => typeof p?.name === 'string' && isDraft(p.settings))
      .slice(0, MAX_PRESETS);
  } catch {
    return [];
  }
}

/** Stores the list; false when the browser refuses (storage full or disabled). */
function storePresets(userId: string, presets: Preset[]): boolean {
  try {
    localStorage.setItem(storageKey(userId), JSON.stringify(presets));
    return true;
  } catch {
    return false;
  }
}

const sameName = (a: string, b: string) => a.toLocaleLowerCase() === b.toLocaleLowerCase();

export function PresetControls({
  userId,
  value,
  onApply,
}: {
  userId: string;
  value: ReplySettingsDraft;
  onApply: (settings: ReplySettingsDraft) => void;
}) {
  const id = useId();
  const [presets, setPresets] = useState<Preset[]>(() => loadPresets(userId));
  const [chosen, setChosen] = useState('');
  const [name, setName] = useState('');
  // A save whose name is taken waits for the user to confirm the replacement.
  const [replacing, setReplacing] = useState<string | null>(null);
  const [note, setNote] = useState<{ text: string; error: boolean } | null>(null);

  // Another tab of the same browser saved or deleted one: show the same list here.
  useEffect(() => {
    setPresets(loadPresets(userId));
    const onStorage = (e: StorageEvent) => {
      if (e.key === storageKey(userId)) setPresets(loadPresets(userId));
    };
    window.addEventListener('storage', onStorage);
    return () => window.removeEventListener('storage', onStorage);
  }, [userId]);

  const commit = (next: Preset[], text: string) => {
    if (!storePresets(userId, next)) {
      setNote({ text: 'The browser refused to store the presets (storage full or disabled).', error: true });
      return;
    }
    setPresets(next);
    setNote({ text, error: false });
  };

  const save = (confirmed: boolean) => {
    const n = name.trim();
    if (!n || n.length > MAX_NAME) {
      setNote({ text: `A preset name has 1 to ${MAX_NAME} characters.`, error: true });
      return;
    }
    if ('error' in parseSettings(value)) {
      setNote({ text: 'Fix the settings above before saving them.', error: true });
      return;
    }
    const taken = presets.find((p) => sameName(p.name, n));
    if (taken && !confirmed) {
      setReplacing(taken.name);
      setNote(null);
      return;
    }
    setReplacing(null);
    if (!taken && presets.length >= MAX_PRESETS) {
      setNote({ text: `You have ${MAX_PRESETS} presets, the most kept: delete one first.`, error: true });
      return;
    }
    const preset = { name: n, settings: { ...value } };
    const next = taken ? presets.map((p) => (p === taken ? preset : p)) : [...presets, preset];
    commit(next, taken ? `Preset "${n}" replaced.` : `Preset "${n}" saved.`);
    setChosen(n);
    setName('');
  };

  const selected = presets.find((p) => p.name === chosen);

  return (
    <fieldset className="rs-presets rs-wide">
      <legend>Presets</legend>
      <div className="rs-row">
        <label htmlFor={`${id}-pick`}>Preset</label>
        <select id={`${id}-pick`} value={selected ? chosen : ''} onChange={(e) => setChosen(e.target.value)}>
          <option value="">{presets.length ? 'Choose a preset…' : 'No saved presets'}</option>
          {presets.map((p) => (
            <option key={p.name} value={p.name}>
              {p.name}
            </option>
          ))}
        </select>
        <button
          type="button"
          disabled={!selected}
          onClick={() => {
            if (!selected) return;
            onApply({ ...selected.settings });
            setNote({ text: `Preset "${selected.name}" applied.`, error: false });
          }}
        >
          Apply
        </button>
        <button
          type="button"
          disabled={!selected}
          onClick={() => {
            if (!selected) return;
            commit(
              presets.filter((p) => p !== selected),
              `Preset "${selected.name}" deleted.`,
            );
            setChosen('');
          }}
        >
          Delete
        </button>
      </div>
      <form
        className="rs-row"
        onSubmit={(e) => {
          e.preventDefault();
          save(false);
        }}
      >
        <label htmlFor={`${id}-name`}>Preset name</label>
        <input
          id={`${id}-name`}
          maxLength={MAX_NAME}
          value={name}
          placeholder="e.g. Precise"
          onChange={(e) => {
            setName(e.target.value);
            setReplacing(null);
          }}
        />
        <button type="submit">Save current settings</button>
      </form>
      {replacing && (
        <div className="rs-row" role="alert">
          <span>A preset named "{replacing}" exists. Replace it with the current settings?</span>
          <button type="button" onClick={() => save(true)}>
            Replace
          </button>
          <button type="button" onClick={() => setReplacing(null)}>
            Keep the old one
          </button>
        </div>
      )}
      {note &&
        (note.error ? (
          <p className="error" role="alert">
            {note.text}
          </p>
        ) : (
          <p className="muted" role="status">
            {note.text}
          </p>
        ))}
    </fieldset>
  );
}
