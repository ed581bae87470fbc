import{u as q,d as E,w as L,r as i,b as D,c as I,k as e,n as y,L as v,p as C,q as O,E as x,o as N,v as w}from"./index-CoiHIMbv.js";import{M as Q,L as A}from"./metricBuffer-tAKsDYpJ.js";import"./uplot-Cf2ZdPUc.js";const K=w(`
  query CompareTrainingJobs($slug: String!, $ids: [ID!]!) {
    project(slug: $slug) {
      id
      compareTrainingJobs(ids: $ids) {
        hyperparameterNames
        metricNames
        rows
        jobs {
          id
          modelName
          state
          createdAt
          metricKeys
        }
      }
    }
  }
`),R=w(`
  query JobCurve($id: ID!, $key: String!) {
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        metrics(key: $key, maxPoints: 1000) {
          step
          value
        }
      }
    }
  }
`);function z(){const n=q().slug??"";E("Compare training jobs",n);const[b]=L(),d=i.useMemo(()=>b.getAll("job"),[b]),g=D(),[{data:m,error:h,fetching:$}]=I({query:K,variables:{slug:n,ids:d},pause:d.length===0}),t=m?.project?.compareTrainingJobs,u=i.useMemo(()=>[...new Set((t?.jobs??[]).flatMap(s=>s.metricKeys))].sort(),[t]),[M,P]=i.useState(""),c=M||(u.includes("val_loss")?"val_loss":u[0]??""),l=i.useMemo(()=>new Q,[]),[J,S]=i.useState(0),[_,T]=i.useState(null);if(i.useEffect(()=>{if(!t||!c)return;let s=!0;const o=t.jobs.map((r,a)=>({job:r,label:`#${a+1} ${r.modelName}`}));return Promise.all(o.map(async({job:r,label:a})=>{const j=await g.query(R,{id:r.id,key:c}).toPromise();if(j.error)throw j.error;const f=j.data?.node;return[a,f?.__typename==="TrainingJob"?f.metrics:[]]})).then(r=>{s&&(l.clear(),l.replay(Object.fromEntries(r)),S(a=>a+1))}).catch(r=>s&&T(r)),()=>{s=!1}},[t,c,g,l]),d.length===0)return e.jsxs("section",{children:[e.jsx(y,{slug:n}),e.jsx("h1",{children:"Compare training jobs"}),e.jsxs("p",{children:["Choose jobs to compare in the ",e.jsx(v,{to:C.jobs(n),children:"list of training jobs"}),"."]})]});if($&&!m)return e.jsx(O,{what:"the comparison"});if(!m&&h)return e.jsx(x,{error:h});if(!t)return e.jsx(x,{error:h??{code:"NOT_FOUND",message:"no such project"}});const k=t.rows,p=(s,o,r)=>{const a=k[s]?.[o];return typeof a=="object"&&a!==null?a[r]:void 0};return e.jsxs("section",{children:[e.jsx(y,{slug:n}),e.jsx("h1",{children:"Compare training jobs"}),e.jsx(x,{error:_}),e.jsx("div",{className:"table-wrap",tabIndex:0,children:e.jsxs("table",{children:[e.jsx("thead",{children:e.jsxs("tr",{children:[e.jsx("th",{scope:"col",children:"Job"}),t.jobs.map((s,o)=>e.jsxs("th",{scope:"col",children:[e.jsxs(v,{to:C.job(n,s.id),children:["#",o+1," ",s.modelName]})," ",e.jsx("span",{className:"muted",children:s.state.toLowerCase()})]},s.id))]})}),e.jsxs("tbody",{children:[t.hyperparameterNames.map(s=>e.jsxs("tr",{children:[e.jsx("th",{scope:"row",children:s}),t.jobs.map((o,r)=>e.jsx("td",{children:N(p(r,"hyperparameters",s))},o.id))]},`h-${s}`)),t.metricNames.filter(s=>t.jobs.some((o,r)=>typeof p(r,"finalMetrics",s)!="object")).map(s=>e.jsxs("tr",{children:[e.jsx("th",{scope:"row",children:e.jsx("strong",{children:s})}),t.jobs.map((o,r)=>e.jsx("td",{className:"num",children:N(p(r,"finalMetrics",s))},o.id))]},`m-${s}`))]})]})}),e.jsx("h2",{children:"Curves"}),e.jsxs("label",{children:["Metric",e.jsx("select",{value:c,onChange:s=>P(s.target.value),children:u.map(s=>e.jsx("option",{children:s},s))})]}),e.jsx(A,{buffer:l,revision:J,singleScale:c,caption:`${c} of each job, by step.`})]})}export{z as default};
