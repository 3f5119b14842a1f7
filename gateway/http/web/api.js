// The gateway's API key (kept in this browser only) and error text, for every tab.
const KEY_STORE = "milo.apiKey";

export function apiKey() {
  return localStorage.getItem(KEY_STORE) || "";
}

export function authHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// A JSON error body from the gateway, as a sentence for a person.
export async function errorText(response) {
  try {
    const body = await response.json();
    return `${response.status}: ${body.error.message}`;
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

export function saveKey(value) {
  localStorage.setItem(KEY_STORE, value.trim());
}
