#include "backends/xml.h"

#include <expat.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

struct builder {
  XML_Parser p;
  struct xml_node *root;
  struct xml_node *cur;
  struct buf text;
  int depth;
  int too_deep;
};

static const char *local_name(const char *name) {
  const char *c = strrchr(name, ':');
  return c ? c + 1 : name;
}

static void flush_text(struct builder *b) {
  if (!b->cur || !b->text.len)
    return;
  size_t old = strlen(b->cur->text);
  b->cur->text = xrealloc(b->cur->text, old + b->text.len + 1);
  memcpy(b->cur->text + old, b->text.data, b->text.len);
  b->cur->text[old + b->text.len] = '\0';
  buf_reset(&b->text);
}

static void on_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
  (void)attrs;
  struct builder *b = ud;
  if (++b->depth > XML_MAX_DEPTH) {
    b->too_deep = 1;
    XML_StopParser(b->p, XML_FALSE);
    return;
  }
  flush_text(b);
  struct xml_node *n = xcalloc(1, sizeof(*n));
  n->name = xstrdup(local_name(name));
  n->text = xstrdup("");
  n->parent = b->cur;
  if (b->cur) {
    /* Appended through the last child: a wide listing stays linear. */
    if (b->cur->last_child)
      b->cur->last_child->next = n;
    else
      b->cur->child = n;
    b->cur->last_child = n;
  } else if (!b->root) {
    b->root = n;
  } else {
    free(n->name);
    free(n->text);
    free(n);
    return;
  }
  b->cur = n;
}

static void on_end(void *ud, const XML_Char *name) {
  (void)name;
  struct builder *b = ud;
  b->depth--;
  flush_text(b);
  if (b->cur)
    b->cur = b->cur->parent;
}

static void on_text(void *ud, const XML_Char *s, int len) {
  struct builder *b = ud;
  if (b->cur)
    buf_append(&b->text, s, (size_t)len);
}

struct xml_node *xml_parse_err(const char *data, size_t len, char *err,
                               size_t errlen) {
  char dummy[8];
  if (!err) {
    err = dummy;
    errlen = sizeof(dummy);
  }
  if (len > INT_MAX) {
    snprintf(err, errlen, "XML document of %zu bytes is too large", len);
    return NULL;
  }
  XML_Parser p = XML_ParserCreate(NULL);
  if (!p) {
    snprintf(err, errlen, "out of memory creating an XML parser");
    return NULL;
  }
  struct builder b = {0};
  b.p = p;
  buf_init(&b.text, 0);
  XML_SetUserData(p, &b);
  XML_SetElementHandler(p, on_start, on_end);
  XML_SetCharacterDataHandler(p, on_text);
  int ok = XML_Parse(p, data, (int)len, 1) == XML_STATUS_OK;
  if (b.too_deep)
    snprintf(err, errlen, "XML nested deeper than %d elements (line %lu)",
             XML_MAX_DEPTH, (unsigned long)XML_GetCurrentLineNumber(p));
  else if (!ok)
    snprintf(err, errlen, "not well-formed XML (line %lu: %s)",
             (unsigned long)XML_GetCurrentLineNumber(p),
             XML_ErrorString(XML_GetErrorCode(p)));
  XML_ParserFree(p);
  buf_destroy(&b.text);
  if (!ok || b.too_deep) {
    xml_free(b.root);
    return NULL;
  }
  return b.root;
}

struct xml_node *xml_parse(const char *data, size_t len) {
  return xml_parse_err(data, len, NULL, 0);
}

/* Iterative: a node's children are spliced in after it, so the depth of the
 * tree never reaches the C stack. */
void xml_free(struct xml_node *n) {
  while (n) {
    if (n->child) {
      struct xml_node *last = n->last_child ? n->last_child : n->child;
      while (last->next)
        last = last->next;
      last->next = n->next;
      n->next = n->child;
    }
    struct xml_node *next = n->next;
    free(n->name);
    free(n->text);
    free(n);
    n = next;
  }
}

struct xml_node *xml_child(const struct xml_node *n, const char *name) {
  if (!n)
    return NULL;
  for (struct xml_node *c = n->child; c; c = c->next)
    if (!strcmp(c->name, name))
      return c;
  return NULL;
}

struct xml_node *xml_next(const struct xml_node *n) {
  for (struct xml_node *c = n->next; c; c = c->next)
    if (!strcmp(c->name, n->name))
      return c;
  return NULL;
}

const char *xml_text(const struct xml_node *n, const char *path) {
  char *copy = xstrdup(path), *save = NULL;
  const struct xml_node *cur = n;
  for (char *tok = strtok_r(copy, "/", &save); tok && cur;
       tok = strtok_r(NULL, "/", &save)) {
    /* The root itself may be named first ("Error/Code" on <Error>). */
    if (cur == n && !strcmp(cur->name, tok) && !xml_child(cur, tok))
      continue;
    cur = xml_child(cur, tok);
  }
  free(copy);
  return cur ? cur->text : NULL;
}
